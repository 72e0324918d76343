"""The data conversions of the ``mona`` object (docs/lua/conversions.rst): Lua files
that write and read each format, and the Python halves they call."""
