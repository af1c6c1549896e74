"""Parley signaling."""
