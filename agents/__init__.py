"""The speech pipeline of one call: VAD and end of turn, STT, LLM, TTS, turn-taking, the reply.

It knows nothing of rooms, WebRTC sessions or the wire: it reads PCM from a track, pushes its voice
into an ``AudioOutput`` and reports typed events (``agents.events``) that others map to the wire.
May import: core.
"""
