"""Parley agents."""
