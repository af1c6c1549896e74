"""One worker of ``parley serve --workers N``: ``python -m parley.server.worker <settings.json>``.

The parent writes each worker's complete settings (its port, node id, the shared port, Redis and the
shared token secret) to a private file; the worker serves exactly like ``parley serve``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from parley.core.logs import setup_logging
from parley.server.cli import run
from parley.server.config import Settings


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m parley.server.worker <settings.json> (started by `parley serve --workers N`)", file=sys.stderr)
        return 2
    settings = Settings.model_validate_json(Path(argv[0]).read_text())
    setup_logging(settings.log_level)
    logging.getLogger("parley").info("worker %s starting on port %d", settings.cluster.node_id, settings.http.port)
    return run(settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
