"""What leaves :func:`~trio_mona.open_runtime`'s nursery, as its caller expects it:
the one exception the block (or the runtime) raised as itself, not wrapped in an
``ExceptionGroup`` (docs/python.rst, "Errors")."""

from __future__ import annotations

from collections.abc import Iterator

import trio

from ._core.errors import InternalError


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def raise_single(group: BaseExceptionGroup[BaseException]) -> None:
    """Raise :func:`single_exception` of *group*, with the context it had."""
    exc = single_exception(group)
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context  # (not the group it was collected in)
        del exc, group


def single_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to raise for *group*: a KeyboardInterrupt or SystemExit in it
    first (as Trio lets them through), else its one exception that is not a
    ``Cancelled`` (the cancellations it caused come with it), else an
    :class:`InternalError` whose cause is the group."""
    leaves = list(_leaves(group))
    for kind in (KeyboardInterrupt, SystemExit):
        for exc in leaves:
            if isinstance(exc, kind):
                return exc
    others = [exc for exc in leaves if not isinstance(exc, trio.Cancelled)]
    if len(others) == 1:
        return others[0]
    if not others and leaves:
        return leaves[0]  # (only cancellations: the enclosing scope's)
    failure = InternalError(f"{len(others)} errors at once inside the runtime (see the cause)")
    failure.__cause__ = group
    return failure
