"""Sphinx configuration for trio_mona's documentation."""

from __future__ import annotations

project = "trio_mona"
author = "the trio_mona developers"
copyright = "2026, the trio_mona developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib_trio",
]
# No intersphinx: documentation builds must work without network access.

html_theme = "furo"
html_title = "trio_mona"
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
highlight_language = "lua"
