"""Parley agents/llm."""
