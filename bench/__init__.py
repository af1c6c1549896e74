"""Parley benchmarks: voice-to-voice latency and capacity measured the way a caller hears it."""
