"""How a publication or a subscription is going, for one kind of media (Lua's
``QualityOfService`` objects; docs/clients/rtmp.rst, "Quality of service").

Counted as frames go, read when Lua asks: the rates are those of the span being
counted and the one before it (one to two seconds), so they follow a stream at once
and a stream that stopped reads 0 B/s two seconds later.
"""

from __future__ import annotations

import attrs

#: The length of a counted span (seconds).
WINDOW = 1.0


@attrs.define(eq=False, slots=True)
class QualityOfService:
    #: When the span being counted started (``time.time()``), and its counts.
    start: float = 0.0
    bytes: int = 0
    frames: int = 0
    lost: int = 0
    #: The span before: its length and counts.
    before: float = 0.0
    before_bytes: int = 0
    before_frames: int = 0
    before_lost: int = 0
    #: Milliseconds (see the docs for what it measures for each object).
    latency: float = 0.0
    #: When the last frame left (``time.time()``; 0: none yet).
    last_sending: float = 0.0
    #: The listener it counts for (its latency is its queue's), or None: a publication's.
    listener: object | None = None

    def sent(self, now: float, size: int) -> None:
        if now - self.start >= WINDOW:
            self._roll(now)
        self.bytes += size
        self.frames += 1
        self.last_sending = now

    def dropped(self, now: float) -> None:
        if now - self.start >= WINDOW:
            self._roll(now)
        self.lost += 1

    def rates(self, now: float) -> tuple[float, float]:
        """Bytes per second and lost frames per frame, as of *now*."""
        if now - self.start >= WINDOW:
            self._roll(now)
        span = max(self.before + now - self.start, 0.1)
        total = self.frames + self.lost + self.before_frames + self.before_lost
        lost = (self.lost + self.before_lost) / total if total else 0.0
        return (self.bytes + self.before_bytes) / span, lost

    def _roll(self, now: float) -> None:
        recent = self.start and now - self.start < 2 * WINDOW  # (else: a silence since)
        self.before = now - self.start if recent else 0.0
        self.before_bytes = self.bytes if recent else 0
        self.before_frames = self.frames if recent else 0
        self.before_lost = self.lost if recent else 0
        self.start, self.bytes, self.frames, self.lost = now, 0, 0, 0


def by_type() -> dict[int, QualityOfService]:
    """One for each kind of media, by RTMP message type: audio, video, data."""
    return {8: QualityOfService(), 9: QualityOfService(), 18: QualityOfService()}
