"""Parley agents/stt."""
