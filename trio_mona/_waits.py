"""The vocabulary of waiting: what a call that has to wait hands the executor
(:class:`Suspension`), and the tokens and parks of the calls that wait
(:class:`Waits`). The executor (``_executor.py``) awaits the work and resumes the
coroutines; the Lua side yields (``_lua/jobs.lua``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable
from typing import Final

import attrs


@attrs.define(eq=False)  # (not frozen: one per wait, and a frozen init costs more)
class Suspension:
    """What a suspending call hands the executor: a token and the work to await.

    *work* returns the values the Lua coroutine resumes with. Without work the
    coroutine is *parked*: something else resumes it (:meth:`Executor.wake`, e.g. the
    read hub for a LuaSocket ``receive``), or its *deadline* passes (Trio's clock) and
    it resumes with ``"timeout"``. *owner* is the application whose code waits: its
    waits are dropped when it unloads.
    """

    token: int
    work: Callable[[], Awaitable[tuple[object, ...]]] | None
    deadline: float = math.inf
    owner: bytes = b""
    #: Called with the token once the coroutine is parked on it (a wait handed out
    #: ahead of time checks then whether what it waits for came meanwhile).
    parked: Callable[[int], None] | None = None


class _ByToken:
    """What Lua hands back, with the token, for a park it knows only by its token."""

    def __repr__(self) -> str:
        return "<park by token>"


#: A park's suspension never crosses into Lua (a Python object handed to Lua costs an
#: allocation and a finalizer there): Lua yields its token, and a Lua call that parked
#: returns ``(BY_TOKEN, token)``; the suspension waits in :attr:`Waits.parks` till then.
BY_TOKEN: Final = _ByToken()


#: A park handed out and not yet parked on: its deadline, owner and ``parked`` hook
#: (the fields of its :class:`Suspension` to be).
Park = tuple[float, bytes, Callable[[int], None] | None]


class Waits:
    """Makes the suspensions of calls that wait, each with a fresh token, and wakes
    parked ones through the executor (:meth:`bind`, once it exists: the Lua host
    table, which needs this, is built before the executor, which needs the Lua state)."""

    def __init__(self) -> None:
        self._tokens = itertools.count(1)
        #: Parks handed out and not yet parked on (see BY_TOKEN), by token.
        self.parks: dict[int, Park] = {}
        #: Resume a parked coroutine (Executor.wake; before bind, nothing waits).
        self.wake: Callable[..., None] = _nothing_to_wake
        #: Whether a token's coroutine still waits (Executor.waits).
        self.waits: Callable[[int], bool] = _nothing_waits

    def bind(
        self, wake: Callable[[int, tuple[object, ...]], None], waits: Callable[[int], bool]
    ) -> None:
        """Wake through the executor from now on (its ``wake`` and ``waits``)."""
        self.wake = wake
        self.waits = waits

    def wait_for(
        self, owner: bytes, work: Callable[[], Awaitable[tuple[object, ...]]]
    ) -> tuple[int, Suspension]:
        token = next(self._tokens)
        return token, Suspension(token, work, owner=owner)

    def park(
        self, owner: bytes, deadline: float, parked: Callable[[int], None] | None = None
    ) -> tuple[int, None]:
        token = next(self._tokens)
        self.parks[token] = (deadline, owner, parked)
        return token, None

    def forget(self, token: int) -> None:
        """A park handed out will not be parked on."""
        self.parks.pop(token, None)


def _nothing_to_wake(*_: object) -> None:
    pass


def _nothing_waits(_: int) -> bool:
    return False
