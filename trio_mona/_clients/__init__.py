"""Clients: browsers and players connecting over HTTP (and later WebSocket and RTMP),
each served by a session on the one TCP transport (docs/clients/http.rst)."""
