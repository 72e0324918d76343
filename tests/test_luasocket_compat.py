"""The same LuaSocket scripts under the real LuaSocket (Debian's ``lua5.4`` and
``lua-socket``) and under trio_mona give the same output (docs/lua/luasocket.rst)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

import trio_mona
from trio_mona import testing

from .helpers import lua_until

SCRIPTS = Path(__file__).parent / "luasocket_scripts"

#: Defines emit(...): each call adds one line, the values joined by spaces.
PROLOGUE = """
OUTPUT = {}
function emit(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  OUTPUT[#OUTPUT + 1] = table.concat(parts, " ")
end
"""


def _real_luasocket() -> None:
    """Fail (not skip: CI installs them) unless the real LuaSocket is here."""
    if os.environ.get("TRIO_MONA_NO_LUASOCKET"):
        pytest.skip("TRIO_MONA_NO_LUASOCKET is set")
    if shutil.which("lua5.4") is None:
        pytest.fail(
            "the comparison needs lua5.4 and lua-socket (apt-get install lua5.4 lua-socket)"
        )


def run_real(script: Path) -> list[str]:
    source = PROLOGUE + script.read_text() + "\nprint(table.concat(OUTPUT, '\\n'))\n"
    result = subprocess.run(
        ["lua5.4", "-"], input=source, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def write_app(script: Path, apps: Path) -> None:
    apps.mkdir()
    (apps / "main.lua").write_text(PROLOGUE + script.read_text() + "\nDONE = true\n")


async def run_trio_mona(script: Path, apps: Path, engine: str = "lua54") -> list[str]:
    write_app(script, apps)
    async with trio_mona.open_runtime(apps, engine=engine) as runtime:
        await lua_until(runtime, "return DONE", 20)
        output = await testing.run_lua(runtime, "return table.concat(OUTPUT, '\\n')")
    assert isinstance(output, bytes)
    return output.decode().splitlines()


def integers(lines: list[str]) -> list[str]:
    """LuaJIT prints whole floats without ``.0``: compare the lines as it writes them."""
    return [re.sub(r"\b(\d+)\.0\b", r"\1", line) for line in lines]


@pytest.mark.parametrize("engine", ["lua54", "luajit21"])
@pytest.mark.parametrize("name", sorted(p.stem for p in SCRIPTS.glob("*.lua")))
async def test_same_output_as_the_real_luasocket(name: str, engine: str, tmp_path: Path) -> None:
    _real_luasocket()
    script = SCRIPTS / f"{name}.lua"
    expected = await trio.to_thread.run_sync(run_real, script)
    assert len(expected) > 5  # the script ran to its end under lua5.4
    ours = await run_trio_mona(script, tmp_path / "apps", engine)
    if engine == "lua54":
        assert ours == expected
    else:
        assert integers(ours) == integers(expected)
