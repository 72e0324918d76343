"""``mona:addToBlacklist``/``removeFromBlacklist``: the set of refused peer addresses.

Checked where a peer first reaches the runtime, on TCP accepts and UDP receives
(docs/design.rst, "Blacklist"); IPv4-mapped IPv6 addresses count as their IPv4 address.
"""

from __future__ import annotations

from .addresses import AddressError, IPAddress


class Blacklist:
    def __init__(self) -> None:
        self._refused: set[bytes] = set()

    def __contains__(self, host: str) -> bool:
        """Whether a peer's IP (as ``accept``/``recvfrom`` give it) is refused."""
        if not self._refused:
            return False
        try:
            return IPAddress.parse(host).unmapped().packed in self._refused
        except AddressError:
            return False

    def change(self, add: bool, *values: bytes | IPAddress) -> bytes | None:
        """Add (or remove) each address, given as text or an IPAddress; return None, or
        one message naming every value that is not an IP address."""
        errors = []
        for value in values:
            if isinstance(value, bytes):
                try:
                    value = IPAddress.parse(value.decode("utf-8", "replace").strip())
                except AddressError as exc:
                    errors.append(str(exc))
                    continue
            packed = value.unmapped().packed
            if add:
                self._refused.add(packed)
            else:
                self._refused.discard(packed)
        if errors:
            verb = "addToBlacklist" if add else "removeFromBlacklist"
            return f"{verb}: {'; '.join(errors)}".encode()
        return None
