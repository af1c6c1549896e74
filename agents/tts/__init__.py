"""Parley agents/tts."""
