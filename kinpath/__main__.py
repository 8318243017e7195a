"""``python -m kinpath``: the same as the ``kinpath`` command."""

import sys

from kinpath.pipelines.cli import main

sys.exit(main())
