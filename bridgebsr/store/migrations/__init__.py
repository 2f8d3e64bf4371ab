"""Alembic revisions of the case store schema, from the first table on."""
