"""The proto contract: generated stubs match the protos, and buf lint is clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gen_protos  # noqa: E402


def stale_files(out: Path) -> list[str]:
    """Generate the stubs into ``out``; list every committed stub that differs or is missing."""
    stale = []
    for path in gen_protos.generate(out):
        relative = path.relative_to(out)
        committed = ROOT / relative
        if not committed.exists() or committed.read_bytes() != path.read_bytes():
            stale.append(str(relative))
    return stale


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    stale = stale_files(tmp_path / "gen")
    assert not stale, f"stubs are stale, run `python scripts/gen_protos.py`: {stale}"


def test_the_check_fails_when_a_proto_changes_without_regenerating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    common = protos / "hive" / "v1" / "common.proto"
    common.write_text(common.read_text() + "\nmessage AddedWithoutRegenerating { string x = 1; }\n")
    monkeypatch.setattr(gen_protos, "PROTOS", protos)
    assert "hive/v1/common_pb2.py" in stale_files(tmp_path / "gen")


def buf() -> str:
    local = ROOT / "node_modules" / ".bin" / "buf"
    found = str(local) if local.exists() else shutil.which("buf")
    if found is None:
        pytest.skip("buf is not installed (scripts/test.sh installs it with npm ci)")
    return found


def test_buf_lint_is_clean() -> None:
    result = subprocess.run([buf(), "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
