"""The suite as a chart and a table (docs/performance.rst), both from one
``bench/results/suite.json``: each throughput workload as bars per server, in multiples
of plain Trio's figure from the same run (1.0: as fast as plain Trio), written as
``docs/images/suite.svg``; and every figure as a reStructuredText table, written as
``docs/suite_table.inc`` (included by the page). ``bench/suite.py`` runs it after each
full run when matplotlib is installed (the bench's dependency group).

    python bench/chart.py [--results bench/results/suite.json] [--out docs/images/suite.svg]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # (after the backend is chosen)

plt.rcParams["svg.hashsalt"] = "trio_mona"  # (the same results draw the same file)

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results" / "suite.json"
DEFAULT_OUT = HERE.parent / "docs" / "images" / "suite.svg"
TABLE_OUT = HERE.parent / "docs" / "suite_table.inc"
#: The table's columns: server name in the results -> heading.
COLUMNS = {
    "trio_mona": "trio_mona (Lua 5.4)",
    "trio_mona jit": "trio_mona (LuaJIT)",
    "trio_mona luasocket": "trio_mona, LuaSocket style",
    "trio_mona 2 workers": "trio_mona, 2 workers",
    "plain trio": "plain Trio",
    "asyncio": "asyncio",
    "uvloop": "uvloop",
    "copas (luajit)": "copas (LuaJIT)",
}


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    value = row[row["metric"]]
    if row["metric"] == "kib_per_connection":
        return f"{value:.1f} ({row.get('vs_trio', 0.0):+.2f})"
    text = f"{value / 1000:.1f}k" if value >= 10_000 else f"{value:,.0f}"
    if row["server"] != "plain trio" and "vs_trio" in row:
        text += f" ({row['vs_trio']:.2f}x)"
    return text


def table(report: dict[str, Any]) -> str:
    """Every figure of *report* as a list-table: value (ratio to plain Trio)."""
    rows = report["rows"]
    found = {(r["workload"], r["server"]): r for r in rows}
    servers = [s for s in COLUMNS if any(r["server"] == s for r in rows)]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - workload"]
    lines += [f"     - {COLUMNS[s]}" for s in servers]
    for workload in workloads:
        lines.append(f"   * - {workload}")
        lines += [f"     - {_cell(found.get((workload, s)))}" for s in servers]
    return "\n".join(lines) + "\n"


def draw(report: dict[str, Any], out: Path) -> None:
    rows = [r for r in report["rows"] if "vs_trio" in r and r["metric"] != "kib_per_connection"]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    # (plain Trio is the line at 1.0)
    servers = list(dict.fromkeys(r["server"] for r in rows if r["server"] != "plain trio"))
    ratio = {(r["workload"], r["server"]): r["vs_trio"] for r in rows}
    height = 0.8 / max(len(servers), 1)
    figure, axes = plt.subplots(figsize=(8, 0.9 + 0.55 * len(workloads) * max(len(servers), 2) / 2))
    for index, server in enumerate(servers):
        positions = [w + index * height for w in range(len(workloads))]
        values = [ratio.get((w, server), 0.0) for w in workloads]
        axes.barh(positions, values, height=height, label=server)
    axes.set_yticks([w + 0.4 - height / 2 for w in range(len(workloads))], workloads)
    axes.invert_yaxis()
    axes.axvline(1.0, color="black", linewidth=0.8, label="plain trio")
    axes.set_xlabel("throughput, in multiples of plain Trio in the same run")
    machine = report.get("machine", {})
    axes.set_title(
        f"bench/suite.py: medians of {report.get('repeat')} repetitions, "
        f"{machine.get('cpus')} cores, Python {machine.get('python')}",
        fontsize=9,
    )
    figure.legend(fontsize=8, loc="lower center", ncol=4, frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="svg", metadata={"Date": None})
    plt.close(figure)


def write_docs(report: dict[str, Any], out: Path = DEFAULT_OUT) -> None:
    """The chart and the table of *report*, where the performance page takes them."""
    draw(report, out)
    TABLE_OUT.write_text(table(report))
    print(f"written {out} and {TABLE_OUT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    write_docs(json.loads(args.results.read_text()), args.out)


if __name__ == "__main__":
    main()
