"""Routers of the public API `/api/v1`."""
