"""Parley agents/vad."""
