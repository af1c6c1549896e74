"""Parley server."""
