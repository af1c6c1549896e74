"""``parley bench``: drives a Parley server (and, side by side, a Pipecat bot) from outside and
measures voice-to-voice latency, per-stage split and capacity; prints a table, writes JSON and a PNG.

May import: core, agents, turn, signaling, server.
"""
