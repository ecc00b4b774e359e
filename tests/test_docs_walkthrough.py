"""docs/security.md's secured cluster, command by command, run as written (issue 21): the
bash block after its ``walkthrough`` marker, in a fresh directory, with the project's
``hive`` first on PATH. Only the ports move (to free ones, so the run collides with
nothing); every other word is the document's. The daemons it starts in the background are
real processes (coordinator, emulated Ollama, agent, gateway) with mutual TLS and tokens."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"
MARKER = "<!-- walkthrough: run by tests/test_docs_walkthrough.py -->"
# The ports the document uses (coordinator, enrolment, metrics, Ollama, agent, agent
# metrics, gateway).
PORTS = ("50051", "50052", "9101", "11434", "50061", "9102", "8000")


def walkthrough() -> str:
    text = DOC.read_text()
    assert MARKER in text, f"{DOC}: the walkthrough marker is gone"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block is not None, f"{DOC}: no bash block after the marker"
    return block.group(1)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_the_secured_cluster_walkthrough_runs_as_written(tmp_path: Path) -> None:
    script = walkthrough()
    for port in PORTS:
        assert re.search(rf"\b{port}\b", script), f"the walkthrough no longer uses {port}"
    for port, free in zip(PORTS, free_ports(len(PORTS)), strict=True):
        script = re.sub(rf"\b{port}\b", str(free), script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # As an operator's shell would, stopping on the first failing command; the daemons it
    # left in the background are stopped at the end, whatever happened.
    wrapped = "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", wrapped],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    logs = "\n".join(
        f"===== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(tmp_path.glob("*.log"))
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{logs}"
    out = done.stdout
    lines = out.splitlines()
    assert "401" in lines, out  # no token, no answer
    assert '"done":true' in out, out  # the caller's token gets one
    assert re.search(r"IRONWOOD\s+\S\s+healthy", out), out
    for name in ("bootstrap admin", "gateway", "docs-walkthrough"):
        assert name in out, out
    # The CLI's stderr said where to enrol: the coordinator's real enrolment address.
    assert "hive certs enroll IRONWOOD --coordinator 127.0.0.1:" in done.stderr, done.stderr
