"""trio_mona's own errors, under one base, and the one way an OS error is worded for
Lua (and the log)."""

from __future__ import annotations


class MonaError(Exception):
    """Base of every error trio_mona raises on purpose."""


class StartupError(MonaError):
    """The applications could not start. The message is one line naming file and line."""


def os_message(exc: OSError) -> str:
    """What Lua reads for an OS error: its text (``"Connection refused"``), without the
    number; the exception's own text when it has none."""
    return exc.strerror or str(exc)


class InternalError(MonaError):
    """Several errors at once inside the runtime (a bug of trio_mona's, or of the
    program around it); the ``ExceptionGroup`` that held them is the cause."""


class LuaError(MonaError):
    """A Lua function that :meth:`~trio_mona.Runtime.call` called raised an error.

    ``message`` is the Lua error (with its file and line), ``traceback`` Lua's stack at
    that point."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.traceback = traceback
