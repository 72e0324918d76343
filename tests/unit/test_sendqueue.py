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
    assert (bool(first.items), first.size, total.bytes) == (False, 0, 1)


def test_advance_drops_what_a_write_took_and_trims_a_chunk() -> None:
    total = Unsent()
    queue = SendQueue(total)
    for chunk in (b"abc", b"def", b"gh"):
        queue.push(chunk)
    queue.advance(4)  # all of the first chunk, one byte of the second
    assert [bytes(c) for c in queue.items] == [b"ef", b"gh"]
    assert (queue.size, total.bytes) == (4, 4)
    queue.advance(4)
    assert not queue.items
    assert (queue.size, total.bytes) == (0, 0)


class Kernel:
    """A socket's send side: takes at most *room* bytes per call, records the calls."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.taken = bytearray()
        self.calls: list[int] = []  # chunks per call

    def send(self, chunk: bytes | memoryview, /) -> int:
        return self.sendmsg([chunk])

    def sendmsg(self, chunks: list[bytes | memoryview], /) -> int:
        self.calls.append(len(chunks))
        data = b"".join(bytes(c) for c in chunks)[: self.room]
        self.taken += data
        return len(data)


def test_a_write_gathers_at_most_gather_max_chunks() -> None:
    queue, kernel = SendQueue(Unsent()), Kernel(room=1 << 20)
    for _ in range(GATHER_MAX + 5):
        queue.push(b"x")
    assert queue.write(kernel) == (GATHER_MAX, False)
    assert queue.write(kernel) == (5, False)
    assert kernel.calls == [GATHER_MAX, 5]
    assert not queue.items


def test_a_partial_write_says_the_kernel_is_full() -> None:
    total = Unsent()
    queue, kernel = SendQueue(total), Kernel(room=2)
    queue.push(b"abc")
    assert queue.write(kernel) == (2, True)
    assert [bytes(c) for c in queue.items] == [b"c"]
    assert (queue.size, total.bytes) == (1, 1)


def test_limits_refuse_with_the_limit_passed() -> None:
    total = Unsent()
    queue, other = SendQueue(total), SendQueue(total)
    other.push(b"o" * 50)
    queue.push(b"q" * 30)
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
def test_what_is_written_is_what_was_pushed_in_order(chunks: list[bytes], rooms: list[int]) -> None:
    total = Unsent()
    queue = SendQueue(total)
    for chunk in chunks:
        queue.push(chunk)
    kernel = Kernel(room=0)
    for room in rooms:
        if not queue.items:
            break
        kernel.room = room
        queue.write(kernel)
        assert queue.size == total.bytes == sum(map(len, chunks)) - len(kernel.taken)
    assert bytes(kernel.taken) + b"".join(bytes(c) for c in queue.items) == b"".join(chunks)


class UDPKernel:
    """A UDP socket's send side: refuses *refused* destinations, fills after *room*."""

    def __init__(self, room: int, refused: tuple[object, ...] = ()) -> None:
        self.room, self.refused = room, refused
        self.sent: list[tuple[bytes, tuple[object, ...] | None]] = []

    def send(self, data: bytes, /) -> int:
        return self.sendto(data, None)

    def sendto(self, data: bytes, address: tuple[object, ...] | None, /) -> int:
        if address == self.refused:
            raise ConnectionRefusedError(111, "refused")
        if len(self.sent) == self.room:
            raise BlockingIOError
        self.sent.append((data, address))
        return len(data)


def test_datagrams_keep_their_boundaries_order_and_destinations() -> None:
    queue = DatagramQueue()
    assert queue.push(b"one", None) is True
    assert queue.push(b"", ("127.0.0.1", 9)) is False  # (an empty datagram is one too)
    assert queue.push(b"three", ("127.0.0.1", 7)) is False
    assert queue.size == 8
    kernel = UDPKernel(room=1)
    assert queue.write(kernel, lambda *_: None) == (3, False)  # (full after one)
    assert kernel.sent == [(b"one", None)]
    kernel.room = 10
    assert queue.write(kernel, lambda *_: None) == (5, True)
    assert kernel.sent[1:] == [(b"", ("127.0.0.1", 9)), (b"three", ("127.0.0.1", 7))]
    assert (bool(queue.items), queue.size) == (False, 0)


def test_a_refused_datagram_is_dropped_and_the_rest_go_on() -> None:
    queue, dropped = DatagramQueue(), []
    queue.push(b"lost", ("127.0.0.1", 1))
    queue.push(b"kept", ("127.0.0.1", 2))
    kernel = UDPKernel(room=10, refused=("127.0.0.1", 1))
    assert queue.write(kernel, lambda data, to, exc: dropped.append((data, to))) == (4, True)
    assert dropped == [(b"lost", ("127.0.0.1", 1))]
    assert kernel.sent == [(b"kept", ("127.0.0.1", 2))]
