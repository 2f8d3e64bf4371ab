"""Shipped lifecycle templates (YAML), one per pilot kind."""
