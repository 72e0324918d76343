"""The package version (also in pyproject.toml; a test keeps the two equal)."""

from typing import Final

VERSION: Final = "0.1.0"
