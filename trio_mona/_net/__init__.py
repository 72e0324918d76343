"""Trio over raw non-blocking sockets: the read hub, when sends are written, the TCP
and UDP handles, name resolution, and what handles may use of the runtime."""
