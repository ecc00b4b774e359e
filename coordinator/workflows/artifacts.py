"""Turning stage outputs into files: fenced code blocks with their names, review notes, tests.

A block's file name comes from, in order: a ``File: path`` (or ``Filename:``/``Path:``)
line just before the fence, a ``title="path"``/``filename=path`` attribute or a bare path
in the fence's info string, or a first-line comment that is a path (``# app/main.py``).
Otherwise the block gets a generated name from the stage and the language. Paths are
made relative and may not climb out of the export directory; a name that tries gets a
generated one instead.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

from coordinator.workflows.model import SUCCEEDED, Artifact, StageRec
from coordinator.workflows.templates import Pipeline
from hive.v1 import common_pb2

FENCE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
FILE_LINE = re.compile(
    r"^\s*(?:[#>*-]+\s*)?(?:\*\*)?(?:file|filename|path)(?:\*\*)?\s*:\s*(?:\*\*)?\s*`?"
    r"(?P<path>[\w./\-]+)`?",
    re.IGNORECASE,
)
INFO_TITLE = re.compile(r"""(?:title|filename|file|path)\s*=\s*["']?(?P<path>[\w./\-]+)""")
PATHLIKE = re.compile(r"^[\w\-]+(?:/[\w.\-]+)*\.[A-Za-z0-9]{1,8}$")
COMMENT_PATH = re.compile(
    r"^\s*(?:#|//|--|/\*)\s*(?P<path>[\w\-]+(?:/[\w.\-]+)*\.[A-Za-z0-9]{1,8})\s*(?:\*/)?\s*$"
)
EXTENSIONS = {
    "python": "py", "py": "py", "typescript": "ts", "ts": "ts", "tsx": "tsx",
    "javascript": "js", "js": "js", "go": "go", "golang": "go", "rust": "rs", "rs": "rs",
    "java": "java", "c": "c", "cpp": "cpp", "c++": "cpp", "csharp": "cs", "ruby": "rb",
    "bash": "sh", "sh": "sh", "shell": "sh", "yaml": "yaml", "yml": "yaml", "json": "json",
    "dockerfile": "Dockerfile", "toml": "toml", "sql": "sql", "html": "html", "css": "css",
    "markdown": "md", "md": "md", "makefile": "mk",
}  # fmt: skip
TEST_NAME = re.compile(r"(^|/)(tests?/|test_)|(_test|\.test|\.spec)\.[a-z]+$")


def safe_path(path: str) -> str | None:
    """``path`` as a clean relative POSIX path, or None if it is empty or climbs out."""
    path = path.strip().replace("\\", "/")
    normal = posixpath.normpath(path.lstrip("/"))
    if normal in ("", ".") or normal.startswith("..") or "/../" in f"/{normal}/":
        return None
    return normal


def extension(language: str) -> str:
    return EXTENSIONS.get(language.strip().lower(), "txt")


def code_blocks(text: str) -> list[tuple[str | None, str, str]]:
    """(file name or None, info language, body) for every fenced block in ``text``."""
    blocks: list[tuple[str | None, str, str]] = []
    for match in FENCE.finditer(text):
        info = match.group("info").strip()
        body = match.group("body")
        name: str | None = None
        before = text[: match.start()].rstrip("\n").rsplit("\n", 2)[-2:]
        for line in reversed(before):
            if not line.strip():
                continue
            m = FILE_LINE.match(line)
            if m:
                name = m.group("path")
            break
        language = info.split()[0] if info else ""
        if name is None:
            m2 = INFO_TITLE.search(info)
            if m2:
                name = m2.group("path")
            else:
                for word in info.split()[1:]:
                    if PATHLIKE.match(word):
                        name = word
                        break
            if language and PATHLIKE.match(language) and "/" in language:
                name, language = language, ""
        if name is None:
            first = body.split("\n", 1)[0]
            m3 = COMMENT_PATH.match(first)
            if m3:
                name = m3.group("path")
        blocks.append((name, language, body))
    return blocks


def stage_artifacts(stage: StageRec, artifacts: str, language: str) -> list[Artifact]:
    """The files one finished stage contributes."""
    if artifacts == "none" or stage.state != SUCCEEDED or not stage.output:
        return []
    if artifacts == "notes":
        parts = [f"# {stage.name}\n"]
        if stage.verdict:
            parts.append(f"Verdict: {stage.verdict.replace('_', ' ')}\n")
        parts.append(stage.output.strip() + "\n")
        reviewers = [
            t for t in stage.tasks if t.role.startswith("reviewer") and t.state == SUCCEEDED
        ]
        if len(reviewers) > 1:
            for t in reviewers:
                if t.iteration == stage.iteration:
                    parts.append(f"\n## {t.role} ({t.node}/{t.endpoint_id}, {t.model})\n\n")
                    parts.append(t.output.strip() + "\n")
        folder = "reviews" if stage.type == common_pb2.TASK_TYPE_CODE_REVIEW else "notes"
        return [Artifact(f"{folder}/{stage.name}.md", "".join(parts), "notes", stage.name)]
    out: list[Artifact] = []
    for i, (name, lang, body) in enumerate(code_blocks(stage.output)):
        path = safe_path(name) if name else None
        if path is None:
            ext = extension(lang or language)
            prefix = "tests/" if artifacts == "tests" else ""
            path = f"{prefix}{stage.name}/{stage.name}_{i + 1}.{ext}"
        if artifacts == "tests" and not TEST_NAME.search(path):
            # A test file named like the code it tests would overwrite that code.
            folder, _, base = path.rpartition("/")
            path = f"tests/{folder + '/' if folder else ''}test_{base}"
        kind = "test" if artifacts == "tests" or TEST_NAME.search(path) else "code"
        out.append(Artifact(path, body, kind, stage.name))
    return out


def collect(stages: Iterable[StageRec], pipeline: Pipeline, language: str) -> list[Artifact]:
    """All artifacts of a workflow, in stage order; a later stage's file replaces an
    earlier one at the same path (optimization rewrites what generation wrote)."""
    by_path: dict[str, Artifact] = {}
    for stage in stages:
        template = next((s for s in pipeline.stages if s.name == stage.name), None)
        if template is None:
            continue
        for artifact in stage_artifacts(stage, template.artifacts, language):
            by_path[artifact.path] = artifact
    return list(by_path.values())
