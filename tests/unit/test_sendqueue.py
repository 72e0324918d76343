"""The send queues, synchronously (``_core/sendqueue.py``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_mona._core.sendqueue import GATHER_MAX, DatagramQueue, SendQueue, Unsent


def test_push_counts_the_queue_and_the_runtime_total() -> None:
    total = Unsent()
    first, second = SendQueue(total), SendQueue(total)
    assert first.push(b"abc") is True  # (was empty: a write is to be scheduled)
    assert first.push(b"de") is False
    assert second.push(b"f") is True
    assert (first.size, second.size, total.bytes) == (5, 1, 6)
    first.clear()
    assert (bool(first), first.size, total.bytes) == (False, 0, 1)


def test_advance_drops_what_a_write_took_and_trims_a_chunk() -> None:
    total = Unsent()
    queue = SendQueue(total)
    for chunk in (b"abc", b"def", b"gh"):
        queue.push(chunk)
    queue.advance(4)  # all of the first chunk, one byte of the second
    assert [bytes(c) for c in queue.chunks] == [b"ef", b"gh"]
    assert (queue.size, total.bytes) == (4, 4)
    queue.advance(4)
    assert not queue
    assert (queue.size, total.bytes) == (0, 0)


def test_front_is_at_most_one_gathering_write() -> None:
    queue = SendQueue(Unsent())
    for _ in range(GATHER_MAX + 5):
        queue.push(b"x")
    assert len(queue.front()) == GATHER_MAX


def test_limits_refuse_and_room_tells_what_is_left() -> None:
    total = Unsent()
    queue, other = SendQueue(total), SendQueue(total)
    other.push(b"o" * 50)
    queue.push(b"q" * 30)
    assert queue.room(hard_limit=40, max_unsent=100) == 10
    assert queue.room(hard_limit=1000, max_unsent=100) == 20  # (the runtime-wide bound)
    assert queue.refusal(10, hard_limit=40, max_unsent=100) is None
    assert queue.refusal(11, hard_limit=40, max_unsent=100) == (
        "send queue full: 30 bytes unsent, limit 40"
    )
    assert queue.refusal(21, hard_limit=1000, max_unsent=100) == (
        "send queue full: 80 bytes unsent across connections, limit 100 (trio_mona.max_unsent)"
    )


@given(
    st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=30),
    st.lists(st.integers(min_value=1, max_value=50), max_size=40),
)
def test_what_is_written_is_what_was_pushed_in_order(
    chunks: list[bytes], writes: list[int]
) -> None:
    total = Unsent()
    queue = SendQueue(total)
    for chunk in chunks:
        queue.push(chunk)
    written = bytearray()
    for size in writes:
        if not queue:
            break
        taken = b"".join(bytes(c) for c in queue.front())[:size]  # (a kernel taking *size*)
        written += taken
        queue.advance(len(taken))
        assert queue.size == total.bytes == sum(map(len, chunks)) - len(written)
    assert bytes(written) + b"".join(bytes(c) for c in queue.chunks) == b"".join(chunks)


def test_datagrams_keep_their_boundaries_and_destinations() -> None:
    queue = DatagramQueue()
    assert queue.push(b"one", None) is True
    assert queue.push(b"", ("127.0.0.1", 9)) is False  # (an empty datagram is one too)
    assert queue.size == 3
    queue.advance()
    assert list(queue.datagrams) == [(b"", ("127.0.0.1", 9))]
    queue.advance()
    assert (bool(queue), queue.size) == (False, 0)
