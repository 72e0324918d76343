"""The rest rule's Python half and read-ahead, synchronously (``_core/inbound.py``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_mona._core.inbound import READ_AHEAD, Inbound


def test_a_read_goes_to_lua_whole_and_what_is_kept_comes_first_next_time() -> None:
    inbound = Inbound()
    inbound.read(5)
    assert inbound.take(b"hello") == b"hello"
    assert inbound.unconsumed == 0
    assert inbound.keep(b"hello", 2) is False  # "lo" kept for the next delivery
    inbound.read(3)
    assert inbound.take(b"abc") == b"loabc"
    inbound.keep(b"loabc", 0)
    assert inbound.kept == b""


def test_a_job_that_stopped_for_its_budget_goes_on_at_its_next_turn() -> None:
    inbound = Inbound()
    inbound.read(6)
    assert inbound.take(b"abcdef") == b"abcdef"
    assert inbound.keep(b"abcdef", -4) is True  # a turn is to be posted
    assert inbound.unconsumed == 4  # read, not consumed: reading stays bounded
    # Reads arriving before the turn wait for it: one turn at a time.
    inbound.read(2)
    assert inbound.take(b"gh") is None
    inbound.read(1)
    assert inbound.take(b"i") is None
    assert inbound.unconsumed == 7
    assert inbound.take(b"") == b"cdefghi"  # the turn: what was left, then the rest
    assert inbound.unconsumed == 0
    assert inbound.take(b"") is None  # a second (stale) turn brings nothing


def test_read_ahead_is_bounded() -> None:
    inbound = Inbound()
    inbound.read(READ_AHEAD - 1)
    assert not inbound.full
    inbound.read(1)
    assert inbound.full
    inbound.take(b"x" * READ_AHEAD)
    assert not inbound.full


def test_reset_forgets_everything() -> None:
    inbound = Inbound()
    inbound.read(3)
    inbound.take(b"abc")
    inbound.keep(b"abc", -2)
    inbound.read(1)
    inbound.take(b"d")
    inbound.reset()
    assert (inbound.kept, inbound.unseen, inbound.later, inbound.unconsumed) == (b"", 0, [], 0)


@given(
    reads=st.lists(st.binary(min_size=1, max_size=20), max_size=20),
    choices=st.lists(st.tuples(st.integers(0, 20), st.booleans()), max_size=60),
)
def test_every_byte_read_is_consumed_once_in_order(
    reads: list[bytes], choices: list[tuple[int, bool]]
) -> None:
    """An executor that posts turns behind reads, and a handler that consumes some
    bytes and either keeps the rest or stops for its budget."""
    inbound, consumed, queue = Inbound(), bytearray(), list(reads)
    decisions = iter(choices)
    for read in reads:
        inbound.read(len(read))
    while queue:
        data = inbound.take(queue.pop(0))
        if data is None:
            continue
        count, stop = next(decisions, (len(data), False))
        count = min(count, len(data))
        consumed += data[:count]
        left = len(data) - count
        if inbound.keep(data, -left if stop and left else left):
            queue.append(b"")  # its turn, behind what is queued
    assert bytes(consumed) + inbound.kept == b"".join(reads)
    assert inbound.unconsumed == 0
