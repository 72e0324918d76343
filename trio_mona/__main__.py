"""``python -m trio_mona``: the same as the ``trio-mona`` command."""

import sys

from ._cli import main

sys.exit(main())
