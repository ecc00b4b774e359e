"""Workflow pieces without a cluster: templates, artifact parsing, the store's schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from coordinator.workflows.artifacts import code_blocks, safe_path
from coordinator.workflows.engine import PriorityGate
from coordinator.workflows.store import SCHEMA_VERSION, StateFileError, WorkflowStore
from coordinator.workflows.templates import PipelineCatalog, load_pipeline_file, parse_pipeline
from hive.config import ConfigError


def test_shipped_pipelines_load_and_full_follows_the_seed() -> None:
    catalog = PipelineCatalog.load()
    assert {"full", "quick", "parallel"} <= set(catalog.names())
    full = catalog.get("full")
    assert full is not None
    assert [s.name for s in full.stages] == [
        "generate",
        "review",
        "testing",
        "compilation",
        "optimization",
    ]
    review = full.stage("review")
    assert review.reviewers == 2 and review.merge is not None and review.loop_back is not None


def test_user_pipeline_directory_adds_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "docs.yaml").write_text(
        "stages:\n  - {name: doc, type: documentation, model: llama3.1:8b, prompt: 'x'}\n"
    )
    catalog = PipelineCatalog.load([tmp_path])
    docs = catalog.get("docs")
    assert docs is not None and docs.source.endswith("docs.yaml")


@pytest.mark.parametrize(
    ("stages", "key", "reason"),
    [
        (
            "- {name: a, type: testing, model: m:1, prompt: x, depends_on: [b]}\n"
            "- {name: b, type: testing, model: m:1, prompt: x, depends_on: [a]}\n",
            "stages[0].depends_on",
            "dependency cycle: a -> b -> a",
        ),
        (
            "- {name: a, type: dancing, model: m:1, prompt: x}\n",
            "stages[0].type",
            "'dancing' is not one of",
        ),
        (
            "- {name: a, type: testing, model: m:1, prompt: '{{b}}'}\n"
            "- {name: b, type: testing, model: m:1, prompt: x, depends_on: [a]}\n",
            "stages[0].prompt",
            "unknown placeholder {{b}}",
        ),
        (
            "- {name: a, type: testing, model: m:1, prompt: x, depends_on: [zz]}\n",
            "stages[0].depends_on",
            "unknown stage 'zz'",
        ),
        (
            "- {name: a, type: testing, model: m:1, prompt: x}\n"
            "- {name: b, type: code_review, model: m:1, prompt: x, loop_back: {to: a}}\n",
            "stages[1].loop_back.to",
            "not upstream",
        ),
        (
            "- {name: a, type: testing, model: m:1, prompt: x, colour: red}\n",
            "stages[0].colour",
            "unknown key",
        ),
    ],
)
def test_template_errors_name_file_key_and_reason(
    tmp_path: Path, stages: str, key: str, reason: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("stages:\n" + "".join("  " + line + "\n" for line in stages.splitlines()))
    with pytest.raises(ConfigError) as info:
        load_pipeline_file(path)
    assert info.value.source == str(path)
    assert info.value.key == key
    assert reason in info.value.reason


def test_pipeline_round_trips_through_json() -> None:
    from coordinator.workflows.templates import pipeline_from_json

    full = PipelineCatalog.load().get("full")
    assert full is not None
    again = pipeline_from_json(full.to_json(), "state")
    assert again.stages == full.stages


def test_code_blocks_find_file_names_in_every_style() -> None:
    text = (
        "Intro.\n\nFile: app/main.py\n```python\nprint(1)\n```\n"
        '```python title="lib/util.py"\nx = 1\n```\n'
        "```go\n// cmd/app/main.go\npackage main\n```\n"
        "```rust\nfn main() {}\n```\n"
        "**File:** `web/index.ts`\n\n```ts\nlet a = 1\n```\n"
    )
    blocks = code_blocks(text)
    assert [b[0] for b in blocks] == [
        "app/main.py",
        "lib/util.py",
        "cmd/app/main.go",
        None,
        "web/index.ts",
    ]
    assert blocks[0][2] == "print(1)\n"
    assert safe_path("../../etc/passwd") is None
    assert safe_path("/abs/x.py") == "abs/x.py"
    assert safe_path("a/./b/../c.py") == "a/c.py"


def test_stage_artifacts_generated_names_and_tests_folder() -> None:
    from coordinator.workflows.artifacts import stage_artifacts
    from coordinator.workflows.model import SUCCEEDED, StageRec

    stage = StageRec("testing", 4, "m", (), state=SUCCEEDED)
    stage.output = "File: app/cart.py\n```python\nassert 1\n```\n```python\nx\n```\n"
    arts = stage_artifacts(stage, "tests", "python")
    assert [(a.path, a.kind) for a in arts] == [
        ("tests/app/test_cart.py", "test"),
        ("tests/testing/testing_2.py", "test"),
    ]


async def test_migrations_apply_to_a_fresh_db_once_and_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = WorkflowStore(path)
    await store.open()
    try:
        assert store.migrations_applied == list(range(1, SCHEMA_VERSION + 1))
        versions = await store.schema_versions()
        assert [v for v, _ in versions] == list(range(1, SCHEMA_VERSION + 1))
        assert all(description for _, description in versions)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    again = WorkflowStore(path)
    await again.open()
    assert again.migrations_applied == []
    await again.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (999, 'from the future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StateFileError, match="999"):
        await WorkflowStore(path).open()


async def test_store_group_commits_and_reads_back(tmp_path: Path) -> None:
    from coordinator.workflows.model import StageRec, WorkflowRec

    store = WorkflowStore(tmp_path / "s.sqlite")
    await store.open()
    try:
        for i in range(300):
            wf = WorkflowRec(f"wf-{i}", "n", "r", "python", 2, "quick", "{}", float(i))
            wf.wait_for_models = i == 7
            wf.stages["a"] = StageRec("a", 2, "m", ())
            store.save_all(wf)
        await store.flush()
        # Far fewer commits than writes: the writer batches what queued up meanwhile.
        assert store.stats.operations == 600
        assert store.stats.commits < 100
        page = await store.list_page(None, 10, None)
        assert [w.id for w in page] == [f"wf-{i}" for i in range(299, 289, -1)]
        got = await store.get("wf-7")
        assert got is not None and list(got.stages) == ["a"] and got.wait_for_models
        other = await store.get("wf-8")
        assert other is not None and not other.wait_for_models
        assert len(await store.unfinished()) == 300
    finally:
        await store.close()


async def test_priority_gate_serves_high_priority_first() -> None:
    import asyncio

    gate = PriorityGate(1)
    order: list[str] = []

    async def job(name: str, priority: int) -> None:
        async with gate.slot(priority):
            order.append(name)
            await asyncio.sleep(0)

    async with gate.slot(2):
        tasks = [asyncio.create_task(job(n, p)) for n, p in [("low", 1), ("high", 3), ("mid", 2)]]
        cancelled = asyncio.create_task(job("cancelled", 3))
        await asyncio.sleep(0.01)
        cancelled.cancel()
    await asyncio.gather(*tasks)
    assert order == ["high", "mid", "low"]


def test_parse_pipeline_rejects_reserved_stage_names() -> None:
    with pytest.raises(ConfigError, match="reserved"):
        parse_pipeline(
            yaml.safe_load(
                "name: x\nstages: [{name: feedback, type: testing, model: m, prompt: p}]"
            ),
            "t",
        )
