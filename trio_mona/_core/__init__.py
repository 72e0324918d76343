"""Sans-I/O parts: no Trio, no sockets; tested synchronously (addresses, configuration,
the blacklist, the events handles post)."""
