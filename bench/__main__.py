"""``python -m parley.bench`` (what ``parley bench`` runs): see ``parley bench --help``."""

import sys

from parley.bench.run import main

sys.exit(main(sys.argv[1:]))
