"""Prefect flows and tasks, thin over the bridgebsr use cases.

Filled in by the orchestration work; the layer exists so the import contracts hold from the start.
"""
