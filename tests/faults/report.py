"""Run the fault suite and print its table (fault → what happens → measured times).

    .venv/bin/python -m tests.faults.report            # the fast cases (those CI runs)
    .venv/bin/python -m tests.faults.report --slow     # and the slow ones
    .venv/bin/python -m tests.faults.report --write    # also update docs/reliability.md

Each case records one row (tests/faults/conftest.py's ``figures``); the table is printed
as Markdown, and ``--write`` puts it between the markers in docs/reliability.md. Needs
root (network namespaces, loop mounts), as CI has.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- fault-table:begin -->", "<!-- fault-table:end -->"


def _number(key: str, value: Any) -> str:
    label = key.removesuffix("_s").replace("_", " ")
    return f"{label} {value} s" if key.endswith("_s") else f"{label} {value}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| fault | what happens | measured |", "|---|---|---|"]
    for row in rows:
        numbers = {k: v for k, v in row.items() if k not in ("case", "fault", "outcome")}
        measured = ", ".join(_number(k, v) for k, v in numbers.items())
        lines.append(f"| {row['fault']} | {row['outcome']} | {measured} |")
    return "\n".join(lines)


def write(doc: Path, text: str) -> None:
    content = doc.read_text()
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    doc.write_text(content[:start] + "\n" + text + "\n" + content[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.report", description=__doc__)
    parser.add_argument("--slow", action="store_true", help="run the slow cases too")
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (-k ...)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "figures.jsonl"
        env = {**os.environ, "HIVE_FAULTS_REPORT": str(report)}
        if args.slow:
            env["HIVE_FAULTS_SLOW"] = "1"
        print(
            f"running the fault suite{' with its slow cases' if args.slow else ''}...",
            file=sys.stderr,
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                str(ROOT / "tests" / "faults"),
                *args.pytest_args,
            ],
            cwd=ROOT,
            env=env,
            check=False,
        )
        rows = (
            [json.loads(line) for line in report.read_text().splitlines()]
            if (report.exists())
            else []
        )
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    cpus = os.cpu_count()
    text = (
        f"{table(rows)}\n\nLatest run: {when}, {len(rows)} cases"
        f"{' (slow ones included)' if args.slow else ''}, pytest exit {done.returncode}, "
        f"on {platform.system()} {platform.machine()} with {cpus} CPUs."
    )
    print(text)
    if args.write and rows:
        write(DOC, text)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
