"""Send an FLV file to the live example's UDP ingest: one tag per datagram, at the pace
of the tags' timestamps (docs/clients/rtmp.rst, "The example").

    python send_flv.py FILE.flv HOST:PORT
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

#: The largest UDP datagram over IPv4.
MAX_DATAGRAM = 65507


def tags(data: bytes) -> list[tuple[int, bytes]]:
    """The FLV tags of *data*: (timestamp in ms, the tag's bytes without its trailer)."""
    if data[:3] != b"FLV":
        raise SystemExit("not an FLV file")
    at = int.from_bytes(data[5:9], "big") + 4  # (the header, then PreviousTagSize0)
    found = []
    while at + 11 <= len(data):
        size = int.from_bytes(data[at + 1 : at + 4], "big")
        time_ms = int.from_bytes(data[at + 4 : at + 7], "big") | data[at + 7] << 24
        found.append((time_ms, data[at : at + 11 + size]))
        at += 11 + size + 4
    return found


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    host, _, port = sys.argv[2].rpartition(":")
    target = (host or "127.0.0.1", int(port))
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for time_ms, tag in tags(Path(sys.argv[1]).read_bytes()):
            if len(tag) > MAX_DATAGRAM:
                print(f"a tag of {len(tag)} bytes at {time_ms} ms is too large for UDP: skipped")
                continue
            wait = start + time_ms / 1000 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sock.sendto(tag, target)


if __name__ == "__main__":
    main()
