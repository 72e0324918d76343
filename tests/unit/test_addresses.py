"""The sans-I/O address core: parsing every argument form, formatting, predicates."""

from __future__ import annotations

import pytest

from trio_mona._core.addresses import (
    AddressError,
    HostName,
    IPAddress,
    SocketAddress,
    parse_port,
    parse_target,
    split_host_port,
)

LOCAL = IPAddress.parse("127.0.0.1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4:80", ("1.2.3.4", "80")),
        ("host:http", ("host", "http")),
        ("[::1]:80", ("::1", "80")),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("fe80::1:2", ("fe80::1:2", None)),
        ("1234", ("", "1234")),
        ("example", ("example", None)),
        (":99", ("", "99")),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, str | None]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("host:", "missing port"),
        ("[::1", "unbalanced"),
        ("::1]", "unbalanced"),
        ("[::1]x", "unexpected"),
        ("[::1]:", "missing port"),
        ("[[::1]]:80", "unbalanced"),
    ],
)
def test_split_host_port_rejects(text: str, cause: str) -> None:
    with pytest.raises(AddressError, match=cause):
        split_host_port(text)


@pytest.mark.parametrize(
    ("value", "port"),
    [(0, 0), (80, 80), (65535, 65535), (443.0, 443), ("8080", 8080), (b"21", 21), ("http", 80)],
)
def test_parse_port(value: object, port: int) -> None:
    assert parse_port(value) == port


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        (-1, "out of range"),
        (65536, "out of range"),
        (1.5, "not an integer"),
        ("no-such-service-x", "invalid port"),
        (True, "invalid port"),
        (None, "invalid port"),
    ],
)
def test_parse_port_rejects(value: object, cause: str) -> None:
    with pytest.raises(AddressError, match=cause):
        parse_port(value)


def test_parse_target_forms() -> None:
    ipv4 = SocketAddress(IPAddress.parse("10.0.0.1"), 80)
    assert parse_target(1234, default_host=LOCAL) == SocketAddress(LOCAL, 1234)
    assert parse_target("10.0.0.1:80", default_host=LOCAL) == ipv4
    assert parse_target(b"10.0.0.1:80", default_host=LOCAL) == ipv4
    assert parse_target("10.0.0.1", 80, default_host=LOCAL) == ipv4
    assert parse_target("10.0.0.1", "http", default_host=LOCAL) == ipv4
    assert parse_target("10.0.0.1", "80", default_host=LOCAL) == ipv4
    assert parse_target(ipv4, default_host=LOCAL) == ipv4
    assert parse_target(IPAddress.parse("10.0.0.1"), 80, default_host=LOCAL) == ipv4
    assert parse_target("[::1]:7", default_host=LOCAL).value == "[::1]:7"
    assert parse_target("[::1]", 7, default_host=LOCAL).value == "[::1]:7"
    assert parse_target("::1", 7, default_host=LOCAL).value == "[::1]:7"
    assert parse_target("localhost:5", default_host=LOCAL) == SocketAddress(LOCAL, 5)
    assert parse_target("5", default_host=LOCAL) == SocketAddress(LOCAL, 5)


def test_parse_target_names_only_when_allowed() -> None:
    assert parse_target("example.test:80", default_host=LOCAL, allow_names=True) == HostName(
        "example.test", 80
    )
    with pytest.raises(AddressError, match=r"invalid IP address 'example\.test'"):
        parse_target("example.test:80", default_host=LOCAL)


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (("1.2.3.4x:80",), "invalid IP address"),
        (("1.2.3.4:99999",), "out of range"),
        (("1.2.3.4:",), "missing port"),
        (("[::1:80",), "unbalanced"),
        (("1.2.3.4",), "missing port"),
        ((70000,), "out of range"),
        (("1.2.3.4", -5), "out of range"),
        ((IPAddress.parse("1.2.3.4"),), "missing port"),
        ((SocketAddress(LOCAL, 1), 5), "takes no port"),
        ((5, 6), "no second argument"),
        (({},), "invalid address"),
        (("fe80::1%eth0", 80), "zone"),
    ],
)
def test_parse_target_rejects(args: tuple[object, ...], cause: str) -> None:
    with pytest.raises(AddressError, match=cause):
        parse_target(*args, default_host=LOCAL)


@pytest.mark.parametrize("name", ["bad name:80", "1.2.3.4.5:80", "-x.test:80", "a..b:80"])
def test_parse_target_rejects_bad_names(name: str) -> None:
    with pytest.raises(AddressError):
        parse_target(name, default_host=LOCAL, allow_names=True)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.2.3.4", "1.2.3.4"),
        ("::1", "::1"),
        ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("0:0:0:0:0:ffff:102:304", "::ffff:1.2.3.4"),
        ("localhost", "127.0.0.1"),
        ("[fe80::1]", "fe80::1"),
    ],
)
def test_ip_value(text: str, value: str) -> None:
    assert IPAddress.parse(text).value == value


def test_socket_address_value_and_order() -> None:
    a = SocketAddress(IPAddress.parse("10.0.0.1"), 80)
    b = SocketAddress(IPAddress.parse("10.0.0.1"), 81)
    c = SocketAddress(IPAddress.parse("::1"), 1)
    assert a.value == "10.0.0.1:80"
    assert c.value == "[::1]:1"
    assert sorted([c, b, a], key=SocketAddress.sort_key) == [a, b, c]
    assert SocketAddress.from_sockaddr(("::1", 5, 0, 0)) == SocketAddress(IPAddress.parse("::1"), 5)


PREDICATES = [
    "is_wildcard",
    "is_broadcast",
    "is_any_broadcast",
    "is_loopback",
    "is_multicast",
    "is_unicast",
    "is_link_local",
    "is_site_local",
    "is_ipv4_compatible",
    "is_ipv4_mapped",
    "is_well_known_mc",
    "is_node_local_mc",
    "is_link_local_mc",
    "is_site_local_mc",
    "is_org_local_mc",
    "is_global_mc",
    "is_local",
]

# address -> the predicates that are true for it (every other one must be false).
CASES: dict[str, set[str]] = {
    "0.0.0.0": {"is_wildcard", "is_ipv4_compatible", "is_ipv4_mapped", "is_local"},
    "255.255.255.255": {
        "is_broadcast",
        "is_any_broadcast",
        "is_ipv4_compatible",
        "is_ipv4_mapped",
        "is_local",
    },
    "192.168.1.255": {
        "is_any_broadcast",
        "is_site_local",
        "is_ipv4_compatible",
        "is_ipv4_mapped",
        "is_local",
    },
    "127.0.0.1": {"is_loopback", "is_unicast", "is_ipv4_compatible", "is_ipv4_mapped", "is_local"},
    "127.8.9.10": {"is_loopback", "is_unicast", "is_ipv4_compatible", "is_ipv4_mapped", "is_local"},
    "8.8.8.8": {"is_unicast", "is_ipv4_compatible", "is_ipv4_mapped"},
    "169.254.3.4": {
        "is_link_local",
        "is_unicast",
        "is_ipv4_compatible",
        "is_ipv4_mapped",
        "is_local",
    },
    "10.1.2.3": {"is_site_local", "is_unicast", "is_ipv4_compatible", "is_ipv4_mapped", "is_local"},
    "172.16.0.1": {
        "is_site_local",
        "is_unicast",
        "is_ipv4_compatible",
        "is_ipv4_mapped",
        "is_local",
    },
    "172.31.255.1": {
        "is_site_local",
        "is_unicast",
        "is_ipv4_compatible",
        "is_ipv4_mapped",
        "is_local",
    },
    "172.32.0.1": {"is_unicast", "is_ipv4_compatible", "is_ipv4_mapped"},
    "224.0.0.1": {
        "is_multicast",
        "is_well_known_mc",
        "is_link_local_mc",
        "is_ipv4_compatible",
        "is_ipv4_mapped",
        "is_local",
    },
    "224.0.1.1": {"is_multicast", "is_global_mc", "is_ipv4_compatible", "is_ipv4_mapped"},
    "238.255.255.254": {"is_multicast", "is_global_mc", "is_ipv4_compatible", "is_ipv4_mapped"},
    "239.255.0.1": {
        "is_multicast",
        "is_site_local_mc",
        "is_ipv4_compatible",
        "is_ipv4_mapped",
        "is_local",
    },
    "239.192.0.1": {
        "is_multicast",
        "is_org_local_mc",
        "is_ipv4_compatible",
        "is_ipv4_mapped",
        "is_local",
    },
    "239.195.255.1": {
        "is_multicast",
        "is_org_local_mc",
        "is_ipv4_compatible",
        "is_ipv4_mapped",
        "is_local",
    },
    "239.196.0.1": {"is_multicast", "is_ipv4_compatible", "is_ipv4_mapped"},
    "::": {"is_wildcard", "is_local"},
    "::1": {"is_loopback", "is_unicast", "is_local"},
    "::1.2.3.4": {"is_unicast", "is_ipv4_compatible"},
    "::ffff:1.2.3.4": {"is_unicast", "is_ipv4_mapped"},
    "2001:db8::1": {"is_unicast"},
    "fe80::1": {"is_link_local", "is_unicast", "is_local"},
    "febf::1": {"is_link_local", "is_unicast", "is_local"},
    "fec0::1": {"is_site_local", "is_unicast", "is_local"},
    "ff02::1": {"is_multicast", "is_well_known_mc", "is_link_local_mc", "is_local"},
    "ff01::1": {"is_multicast", "is_well_known_mc", "is_node_local_mc", "is_local"},
    "ff15::1": {"is_multicast", "is_site_local_mc", "is_local"},
    "ff18::1": {"is_multicast", "is_org_local_mc", "is_local"},
    "ff1e::1": {"is_multicast", "is_global_mc"},
    "ff0e::1": {"is_multicast", "is_well_known_mc", "is_global_mc"},
}


@pytest.mark.parametrize("text", sorted(CASES))
def test_predicates(text: str) -> None:
    address = IPAddress.parse(text)
    truths = {name for name in PREDICATES if getattr(address, name)}
    assert truths == CASES[text]
