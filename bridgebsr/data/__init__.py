"""Shipped data: the Bridge-BSR consortium partners and contacts."""
