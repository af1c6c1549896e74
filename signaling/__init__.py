"""The wire protocol and the HTTP/WebSocket edge: typed messages, the REST API and its OpenAPI
document, join tokens, limits, the Python client, and the mapping of agent events to the wire.

What it needs of rooms and calls it declares itself (``signaling.contracts``); the server implements it.
May import: core, agents, turn.
"""
