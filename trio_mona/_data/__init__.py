"""The persistent ``data`` tree: where it is stored (docs/lua/data.rst)."""
