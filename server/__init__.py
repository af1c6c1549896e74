"""The media plane and the composition root: rooms, participants and their peer connections, Opus
forwarding, playout, the agent in a room; the composed settings, the app's assembly and the CLI.

May import: core, agents, turn, signaling.
"""

import os

# numpy's OpenBLAS starts a thread per core, used for the matrix products it is handed (the log-mel features
# of Whisper and Smart Turn among them), and its threads then spin, waiting for more, on the cores that
# Whisper, the end-of-turn model and the LLM need. Measured on 2 cores (2026-12-06): a Whisper tiny.en
# pass 215–239 → 142–171 ms alone, and with Smart Turn beside it 245 → 163 ms (Smart Turn 165 → 77 ms) with
# one BLAS thread. Set before numpy is first imported (nothing in ``parley.server`` imports it at import
# time); the children (LLM server, workers) inherit it. An explicit OPENBLAS_NUM_THREADS wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
