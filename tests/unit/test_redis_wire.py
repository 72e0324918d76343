"""The Redis wire's URL reading and command encoding (docs/scaling.rst)."""

from __future__ import annotations

import hiredis
import pytest

from trio_mona._data.redis import shown_url
from trio_mona._data.redis_wire import encode, options


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h", {"host": "h", "port": "6379", "db": ""}),
        ("redis://127.0.0.1:6380/2", {"host": "127.0.0.1", "port": "6380", "db": "2"}),
        (
            "redis://user:p%40ss@h:1/3",
            {"host": "h", "port": "1", "db": "3", "username": "user", "password": "p@ss"},
        ),
        ("redis://:secret@h", {"host": "h", "port": "6379", "db": "", "password": "secret"}),
        ("unix:///run/redis.sock?db=4", {"path": "/run/redis.sock", "db": "4"}),
        (
            "rediss://h:6380/1?ssl_ca_certs=/ca.pem&ssl_cert_reqs=none&other=x",
            {
                "host": "h",
                "port": "6380",
                "db": "1",
                "tls": "yes",
                "ssl_ca_certs": "/ca.pem",
                "ssl_cert_reqs": "none",
            },
        ),
    ],
)
def test_options(url: str, expected: dict[str, str]) -> None:
    assert options(url) == expected


def test_commands_are_resp_arrays_that_hiredis_reads_back() -> None:
    command = (b"EVALSHA", b"", b"a\r\nb\x00", b"x" * 70_000)
    reader = hiredis.Reader()
    reader.feed(encode(command))
    assert reader.gets() == list(command)
    assert reader.gets() is False


def test_messages_do_not_show_the_password() -> None:
    assert shown_url("redis://user:secret@h:1/0") == "redis://user:***@h:1/0"
    assert shown_url("redis://:secret@h/0") == "redis://:***@h/0"
    assert shown_url("redis://h:1/0") == "redis://h:1/0"
