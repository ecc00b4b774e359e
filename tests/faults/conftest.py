"""The fault suite: real processes, real faults (see harness.py and docs/reliability.md).

The fast cases run with the rest of the tests; the slow ones (``@pytest.mark.slow_fault``)
only with ``--faults-slow`` (or ``HIVE_FAULTS_SLOW=1``). Each case records its figures
with the ``figures`` fixture; with ``HIVE_FAULTS_REPORT=FILE`` they are appended to FILE
as JSON lines, which ``python -m tests.faults.report`` turns into the table in
docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import pytest

NEEDS_ROOT = "the fault suite needs root (network namespaces, mounts)"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--faults-slow", action="store_true", help="also run the fault suite's slow cases"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = config.getoption("--faults-slow") or os.environ.get("HIVE_FAULTS_SLOW") == "1"
    skip = pytest.mark.skip(reason="a slow fault case: run with --faults-slow")
    for item in items:
        if "slow_fault" in item.keywords and not slow:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow_fault: a fault case run only with --faults-slow")
    config.addinivalue_line("markers", "needs_root: a fault case that needs root")


Record = Callable[..., None]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Record:
    """``figures(fault=..., outcome=..., **numbers)``: this case's row of the table."""

    def record(fault: str, outcome: str, **numbers: Any) -> None:
        row = {"case": request.node.name, "fault": fault, "outcome": outcome, **numbers}
        print("FAULT-FIGURES", json.dumps(row))
        path = os.environ.get("HIVE_FAULTS_REPORT")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")

    return record


def root_tools_missing() -> str:
    """Why the namespace and mount cases cannot run here ("" when they can). They are
    not skipped in CI: CI runs as root with iproute2 (scripts/install-system-deps.sh)."""
    if os.geteuid() != 0:
        return NEEDS_ROOT
    for tool in ("ip", "tc", "mount", "losetup", "mkfs.ext4", "chattr"):
        if shutil.which(tool) is None:
            return f"the fault suite needs {tool!r} (scripts/install-system-deps.sh)"
    return ""
