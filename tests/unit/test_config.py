"""Configuration parsing (sans-I/O) and how Lua sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

import trio_mona
from trio_mona._core.config import (
    ConfigError,
    ConfigValue,
    HTTPSettings,
    RTMPSettings,
    Settings,
    WebSocketSettings,
    load_config,
    nest,
    parse_ini,
    parse_setting,
    typed,
)

from ..helpers import lua, running, write_app

INI = """\
port=19350 ; existing config
Top = yes # comment
[myGroup]
myConfig=test
CamelKey = 1.5
flag = TRUE
empty =
bare
[echo]
port = 1234
"""


def test_parse_ini() -> None:
    assert parse_ini(INI) == {
        "port": "19350",
        "Top": "yes",
        "myGroup.myConfig": "test",
        "myGroup.CamelKey": "1.5",
        "myGroup.flag": "TRUE",
        "myGroup.empty": "",
        "myGroup.bare": "",
        "echo.port": "1234",
    }


def test_parse_ini_errors_name_the_line() -> None:
    with pytest.raises(ConfigError, match=r"f.ini:2: unclosed section"):
        parse_ini("a=1\n[broken\n", source="f.ini")
    with pytest.raises(ConfigError, match=r":1: missing key"):
        parse_ini("=5")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("False", False),
        ("42", 42),
        ("-7", -7),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("0x10", "0x10"),
        ("abc", "abc"),
        ("", ""),
    ],
)
def test_typed(raw: str, value: object) -> None:
    result = typed(raw)
    assert result == value
    assert type(result) is type(value)


def test_parse_setting() -> None:
    assert parse_setting("echo.port=5") == ("echo.port", "5")
    assert parse_setting("a.b.c = x=y") == ("a.b.c", "x=y")
    with pytest.raises(ConfigError, match=r"SECTION\.KEY=VALUE"):
        parse_setting("novalue")


def test_load_config_overrides_file(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text(INI)
    config = load_config(ini, ["echo.port=99", "new.key=on"])
    assert config["echo.port"] == 99
    assert config["new.key"] == "on"
    assert config["port"] == 19350
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.ini")


def test_nest_section_wins_over_value() -> None:
    assert nest({"a": 1, "a.b": 2, "c.d.e": 3, "f": "x"}) == {
        "a": {"b": 2},
        "c": {"d": {"e": 3}},
        "f": "x",
    }


def test_settings() -> None:
    settings = Settings.from_config({"trio_mona.linger": 1, "trio_mona.soft_limit": 10})
    assert settings.linger == 1.0
    assert settings.soft_limit == 10
    with pytest.raises(ConfigError, match="must be int"):
        Settings.from_config({"trio_mona.soft_limit": "big"})
    with pytest.raises(ConfigError, match="hard_limit"):
        Settings.from_config({"trio_mona.soft_limit": 100, "trio_mona.hard_limit": 10})
    with pytest.raises(ConfigError, match="engine"):
        Settings.from_config({"trio_mona.engine": "lua99"})


async def test_configs_in_lua(tmp_path: Path) -> None:
    ini = tmp_path / "mona.ini"
    ini.write_text(INI)
    folder = write_app(tmp_path / "apps", "")
    async with trio_mona.open_runtime(
        folder, config_file=ini, settings=["echo.port=77"], arguments=["first", "2"]
    ) as runtime:
        assert await lua(runtime, "return mona.configs.port") == 19350
        assert await lua(runtime, "return mona.configs.myGroup.myConfig") == b"test"
        assert await lua(runtime, "return mona.configs['myGroup.myConfig']") == b"test"
        assert await lua(runtime, "return mona.configs.myGroup.CamelKey") == 1.5
        assert await lua(runtime, "return mona.configs.myGroup.flag") is True
        assert await lua(runtime, "return mona.configs.echo.port") == 77
        assert await lua(runtime, "return math.type(mona.configs.echo.port)") == b"integer"
        assert await lua(runtime, "return mona.configs['application.name']") == b"trio_mona"
        version = await lua(runtime, "return mona.configs.application.version")
        assert version == trio_mona.__version__.encode()
        assert await lua(runtime, "return mona.configs['arguments.1']") == b"first"
        assert await lua(runtime, "return mona.configs.arguments[2]") is None  # nested by name
        assert await lua(runtime, "return mona.configs.arguments['2']") == 2


async def test_environment_in_lua(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_MONA_TEST_VALUE", "hello")
    async with running(tmp_path, "") as runtime:
        assert await lua(runtime, "return mona.environment.TRIO_MONA_TEST_VALUE") == b"hello"
        message = await lua(
            runtime, "local ok, e = pcall(function() mona.configs = {} end) return e"
        )
        assert b"read-only" in message


async def test_bad_settings_fail_startup(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "")
    with pytest.raises(trio_mona.StartupError, match="soft_limit"):
        async with trio_mona.open_runtime(folder, settings={"trio_mona.soft_limit": "-1"}):
            pass
    with pytest.raises(trio_mona.StartupError, match="cannot read configuration"):
        async with trio_mona.open_runtime(folder, config_file=tmp_path / "nope.ini"):
            pass


def test_huge_numbers_are_numbers_not_errors() -> None:
    assert typed("9" * 4301) == float("inf")
    assert typed("-" + "1" * 30) == -1.111111111111111e29
    assert typed("123456789012345678") == 123456789012345678
    assert load_config(None, {"echo.port": "9" * 5000})["echo.port"] == float("inf")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("linger", "1" + "0" * 400, "linger must be 0 to 3600, got inf"),
        ("linger", "1e999", "linger must be 0 to 3600"),
        ("manage_interval", "1e-320", "manage_interval must be 0.01 to 86400"),
        ("reload_interval", "0.0001", "reload_interval must be 0 (off) or 0.01 to 86400"),
        ("handler_timeout", "-1", "handler_timeout must be 0 (off) or 0.01 to 86400"),
        ("max_memory", "1000", "max_memory must be 0 (off) or 4 MiB to"),
        ("soft_limit", "0", "soft_limit must be 1 to"),
        ("hard_limit", "10", "hard_limit must be soft_limit to"),
        ("linger", "nan", "linger must be float, got 'nan'"),
        ("engine", "x" * 500, "engine must be one of"),
        ("cluster", "", "cluster must be 1 to 100 printable characters"),
        ("cluster", "a\tb", "cluster must be 1 to 100 printable characters"),
        ("cluster", "c" * 101, "cluster must be 1 to 100 printable characters"),
    ],
)
def test_settings_out_of_range_are_refused(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_config(load_config(None, {f"trio_mona.{key}": value}))


def test_ini_lines_end_only_at_newlines() -> None:
    text = "motd = hello\x0c[trio_mona]\x0csandbox = false\r\nother = 1\u2028two\n"
    entries = parse_ini(text)
    assert entries == {"motd": "hello\x0c[trio_mona]\x0csandbox = false", "other": "1\u2028two"}


def test_the_http_and_websocket_sections() -> None:
    assert HTTPSettings.from_config({}).port is None
    assert HTTPSettings.from_config({"HTTP.port": 0}).port == 0
    assert HTTPSettings.from_config({"HTTP.port": False}).port is None
    found = HTTPSettings.from_config(
        {"HTTP.port": 8080, "HTTP.host": "0.0.0.0", "HTTP.timeout": 3, "HTTP.index": "home.html",
         "HTTP.maxBody": 1000, "HTTP.cors": False}
    )  # fmt: skip
    assert (found.port, found.host, found.timeout, found.index) == (
        8080,
        "0.0.0.0",
        3.0,
        "home.html",
    )
    assert (found.maxBody, found.cors) == (1000, False)
    bad_ones: list[tuple[dict[str, ConfigValue], str]] = [
        ({"HTTP.port": 70000}, "HTTP.port must be a port number"),
        ({"HTTP.port": "x"}, "HTTP.port must be a port number"),
        ({"HTTP.timeout": 0}, "HTTP.timeout must be 0.01 to 86400"),
        ({"HTTP.maxHeaders": "big"}, "HTTP.maxHeaders must be a number"),
        ({"HTTP.cors": 1}, "HTTP.cors must be true or false"),
    ]
    for bad, message in bad_ones:
        with pytest.raises(ConfigError, match=message):
            HTTPSettings.from_config(bad)
    socket = WebSocketSettings.from_config({"WebSocket.maxMessage": 100, "WebSocket.ping": 1})
    assert (socket.maxMessage, socket.ping, socket.timeout, socket.compress) == (
        100,
        1.0,
        120.0,
        True,
    )
    with pytest.raises(ConfigError, match=r"WebSocket\.maxMessage must be 1 to"):
        WebSocketSettings.from_config({"WebSocket.maxMessage": 0})
    with pytest.raises(ConfigError, match=r"WebSocket\.compress must be true or false"):
        WebSocketSettings.from_config({"WebSocket.compress": "yes"})


def test_the_rtmp_section() -> None:
    found = RTMPSettings.from_config({"RTMP.port": 1935, "RTMP.gopCache": True})
    assert (found.port, found.host, found.timeout, found.gopCache) == (
        1935,
        "127.0.0.1",
        60.0,
        True,
    )
    assert RTMPSettings.from_config({}).gopCache is False
    with pytest.raises(ConfigError, match=r"RTMP\.gopCache must be true or false"):
        RTMPSettings.from_config({"RTMP.gopCache": "yes"})
