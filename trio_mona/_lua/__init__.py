"""The only code that knows lupa: the bridge to the Lua prelude, the host functions
Lua calls, and the runtime's own Lua files."""
