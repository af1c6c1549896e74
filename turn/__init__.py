"""Parley turn."""
