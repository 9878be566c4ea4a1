"""``python -m xentbench.suites.cli``: the ``xentbench`` command."""

import sys

from xentbench.suites.cli.main import main

sys.exit(main())
