"""``python -m umr.cli``: the ``umr`` command."""

import sys

from umr.cli import main

sys.exit(main())
