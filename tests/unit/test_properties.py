"""Property-based tests of the parsers and the framing loop: for any input, a value or
the documented error, never another exception. ``nox -s fuzz`` runs them with 100,000
inputs each (the ``fuzz`` Hypothesis profile, see conftest.py)."""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_mona._core.addresses import (
    AddressError,
    HostName,
    IPAddress,
    SocketAddress,
    parse_port,
    parse_target,
)
from trio_mona._core.config import ConfigError, Settings, parse_ini, typed
from trio_mona._lua.bridge import LuaBridge

WILDCARD = IPAddress.wildcard(ipv6=False)

#: Text that looks like what address arguments are made of, and anything at all.
address_text = st.one_of(
    st.text(alphabet="0123456789abcdef:.[]%-_ x\x00", max_size=60),
    st.text(max_size=60),
    st.from_regex(r"\[?[0-9a-f:.]{0,45}\]?(:[0-9]{0,7})?", fullmatch=True),
)
port_values = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=30),
    st.integers(4000, 6000).map(lambda n: "9" * n),
)


@given(first=st.one_of(address_text, st.binary(max_size=60), st.integers()), second=port_values)
def test_address_arguments_give_an_address_or_an_address_error(
    first: object, second: object
) -> None:
    try:
        target = parse_target(first, second, default_host=WILDCARD, allow_names=True)
    except AddressError as exc:
        message = str(exc)
        assert message
        return
    assert isinstance(target, SocketAddress | HostName)
    assert 0 <= target.port <= 65535


@given(value=port_values)
def test_ports_give_a_port_or_an_address_error(value: object) -> None:
    try:
        port = parse_port(value)
    except AddressError:
        return
    assert 0 <= port <= 65535


@given(address=st.ip_addresses(), port=st.integers(0, 65535))
def test_socket_addresses_round_trip_through_their_text(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    value = SocketAddress(IPAddress(address.packed), port)
    assert parse_target(value.value, default_host=WILDCARD) == value
    assert IPAddress.parse(value.host.value) == value.host


@given(text=st.text(max_size=300))
def test_ini_text_gives_entries_or_a_config_error(text: str) -> None:
    try:
        entries = parse_ini(text)
    except ConfigError:
        return
    for key, value in entries.items():
        assert isinstance(key, str)
        assert isinstance(value, str)
        assert "\n" not in value


ini_word = (
    st.text(
        alphabet=st.characters(blacklist_characters="\n\r;#=[]", blacklist_categories=["Cs"]),
        min_size=1,
        max_size=12,
    )
    .map(str.strip)
    .filter(bool)
)


@given(
    sections=st.dictionaries(
        ini_word.filter(lambda w: "." not in w),
        st.dictionaries(ini_word.filter(lambda w: "." not in w), ini_word, max_size=4),
        max_size=4,
    )
)
def test_ini_files_round_trip(sections: dict[str, dict[str, str]]) -> None:
    text = "".join(
        f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
        for name, keys in sections.items()
    )
    expected = {
        f"{name}.{key}": value for name, keys in sections.items() for key, value in keys.items()
    }
    assert parse_ini(text) == expected


@given(
    raw=st.one_of(
        st.text(max_size=50),
        st.from_regex(r"[+-]?[0-9]{1,40}(\.[0-9]*)?(e[+-]?[0-9]{1,4})?", fullmatch=True),
        st.integers(19, 6000).map(lambda n: "9" * n),
    )
)
def test_config_values_are_typed_without_errors(raw: str) -> None:
    value = typed(raw)
    assert isinstance(value, bool | int | float | str)
    if isinstance(value, int) and not isinstance(value, bool):
        assert -(1 << 63) <= value < (1 << 63)


@given(
    key=st.sampled_from([f.name for f in attrs.fields(Settings)]),
    raw=st.one_of(st.text(max_size=20), st.floats().map(repr), st.integers().map(str)),
)
def test_settings_are_accepted_or_refused_with_a_config_error(key: str, raw: str) -> None:
    try:
        Settings.from_config({f"trio_mona.{key}": typed(raw)})
    except ConfigError as exc:
        message = str(exc)
        assert key in message


FRAMING_HANDLER = """
return function(self, data)
  local header = data:match("^(%d+):")
  if not header then return #data end
  local need = #header + 1 + tonumber(header)
  if #data < need then return #data end
  seen[#seen + 1] = data:sub(#header + 2, need)
  return #data - need
end
"""


@pytest.fixture(scope="module", params=["lua54", "luajit21"])
def framing(request: pytest.FixtureRequest) -> tuple[LuaBridge, Any]:
    """A Lua state with the prelude and one TCPClient object whose onData parses
    length-prefixed messages into the global ``seen``."""
    classes = ("IPAddress", "SocketAddress", "TCPClient", "TCPServer", "UDPSocket", "Publication",
               "Listener", "QualityOfService")  # fmt: skip
    host = {
        "internal_error": print,
        "stopping": lambda: False,
        "properties": {name: [] for name in classes},  # (none is read here)
    }
    bridge = LuaBridge(request.param, host)
    client = bridge.new_object(b"TCPClient", object(), b"")
    client[b"onData"] = bridge.eval(f"(function() seen = {{}} {FRAMING_HANDLER} end)()")
    return bridge, client


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    sizes=st.lists(st.one_of(st.integers(0, 3), st.integers(0, 3000)), max_size=150),
    cuts=st.lists(st.integers(1, 70000), max_size=12),
)
def test_framing_sees_every_message_once_in_order_however_it_is_read(
    framing: tuple[LuaBridge, Any], sizes: list[int], cuts: list[int]
) -> None:
    """The rest rule's re-call loop (windows, and stopping for its budget to go on at
    the next turn, as the executor does) over any split of the stream into reads."""
    bridge, client = framing
    bridge.eval("(function() for k in pairs(seen) do seen[k] = nil end end)()")
    messages = [bytes([97 + i % 26]) * size for i, size in enumerate(sizes)]
    stream = b"".join(b"%d:%s" % (len(m), m) for m in messages)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {len(stream)})
    kept, start = b"", 0
    for point in points:
        data, start = kept + stream[start:point], point
        rest = bridge.on_data(client, data)
        while rest < 0:  # stopped for its budget: the executor runs it again
            data = data[rest:]
            rest = bridge.on_data(client, data)
        kept = data[-rest:] if rest else b""
    seen = bridge.eval("seen")
    assert [seen[i + 1] for i in range(len(seen))] == messages
    assert kept == b""
