"""The conversions' Python half, as the host functions the Lua prelude calls (the
Lua halves are this package's ``.lua`` files): a document is read into a tape in one
crossing (``tape.py``), and AMF is written and read through one."""

from __future__ import annotations

import functools

from . import amf_tape, helpers, json, xml, xmlrpc
from .tape import Tapes


def functions(tapes: Tapes | None = None) -> dict[str, object]:
    """The host functions; *tapes* hands long tapes over (shared with the runtime's
    other readers: the WebSocket messages)."""
    tapes = tapes or Tapes()
    return {
        "b64encode": helpers.b64encode,
        "valid_utf8": helpers.valid_utf8,
        "json_read": functools.partial(json.read, tapes),
        "xml_read": functools.partial(xml.read, tapes),
        "xmlrpc_read": functools.partial(xmlrpc.read, tapes),
        "tape_more": tapes.more,
        "tape_push": tapes.push,
        "amf_write": functools.partial(amf_tape.write, tapes),
        "amf_read": functools.partial(amf_tape.read, tapes),
    }
