"""MonaServer's two log levels that Python's logging lacks, registered by name (so
``--log-level note`` works and records show NOTE and TRACE)."""

import logging
from typing import Final

NOTE: Final = 25
TRACE: Final = 5
logging.addLevelName(NOTE, "NOTE")
logging.addLevelName(TRACE, "TRACE")
