"""Sans-I/O protocol cores for the clients (HTTP, WebSocket, RTMP): bytes or request
parts in, events or decisions out; no Trio, no Lua (docs/architecture.rst)."""
