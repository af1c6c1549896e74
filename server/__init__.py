"""The media plane and the composition root: rooms, participants and their peer connections, Opus
forwarding, playout, the agent in a room; the composed settings, the app's assembly and the CLI.

May import: core, agents, turn, signaling.
"""
