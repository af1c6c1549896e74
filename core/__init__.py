"""Parley's shared vocabulary: the error hierarchy, logging, audio sample formats, the settings base,
small OS helpers, and the one module that touches aiortc/aioice internals (``aiortc_hooks``).

Layers, bottom to top: core → agents, turn → signaling → server → bench (``tests/unit/test_layers.py``).
May import: nothing else of Parley.
"""
