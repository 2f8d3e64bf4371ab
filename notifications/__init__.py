"""The post office: outbox, preferences, digests, quiet hours, delivery through Apprise.

Filled in by the notifications work; the layer exists so the import contracts hold from the start.
"""
