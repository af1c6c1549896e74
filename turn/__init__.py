"""The TURN relay: coturn's configuration and process (``parley turn``), and TURN REST credentials.

May import: core.
"""
