"""Pipeline templates: YAML files that say which stages a workflow runs and how they connect.

A template is a DAG of stages. Each stage names its task type, its model, a prompt
template and the stages it depends on; a review stage may fan out to several reviewers
whose verdicts a merge step combines, and may loop back once to an earlier stage when the
verdict asks for changes. The shipped templates live next to this module in
``pipelines/``; user templates come from extra directories and override shipped ones of
the same name. Every error names the file, the key and the reason (``ConfigError``).

Prompt templates use ``{{name}}`` placeholders: ``requirements``, ``language``, ``name``
(the workflow's), ``feedback`` (notes of a loop-back, empty otherwise), the name of any
upstream stage (its output), and in a merge prompt ``reviews`` (all reviewers' notes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from hive.config import ConfigError
from hive.v1 import common_pb2

TASK_TYPES = {
    "code_generation": common_pb2.TASK_TYPE_CODE_GENERATION,
    "code_review": common_pb2.TASK_TYPE_CODE_REVIEW,
    "testing": common_pb2.TASK_TYPE_TESTING,
    "compilation": common_pb2.TASK_TYPE_COMPILATION,
    "optimization": common_pb2.TASK_TYPE_OPTIMIZATION,
    "documentation": common_pb2.TASK_TYPE_DOCUMENTATION,
}
TASK_TYPE_NAMES = {v: k for k, v in TASK_TYPES.items()}
# What a stage contributes to the workflow's artifacts.
ARTIFACT_KINDS = ("code", "tests", "notes", "none")
BUILTIN_VARS = frozenset({"requirements", "language", "name", "feedback"})
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# A reviewer's notes block the code when a line says so; the default prompts ask for it.
DEFAULT_BLOCKING = (
    r"(?im)^\s*(?:\*\*)?\s*(?:verdict\s*:\s*(?:changes[ _]requested|reject)|blocking\s*:)"
)
MAX_REVIEWERS = 8
MAX_LOOPS = 3


@dataclass(frozen=True, slots=True)
class MergeSpec:
    model: str
    prompt: str


@dataclass(frozen=True, slots=True)
class LoopBack:
    """Re-run ``to`` (and every stage downstream of it) when the verdict asks for changes,
    at most ``max`` times per workflow."""

    to: str
    max: int = 1


@dataclass(frozen=True, slots=True)
class StageTemplate:
    name: str
    type: int
    model: str
    prompt: str
    depends_on: tuple[str, ...] = ()
    system: str = ""
    reviewers: int = 1
    merge: MergeSpec | None = None
    # A regular expression; a task output matching it is a "changes requested" verdict.
    blocking_pattern: str = ""
    # How many reviewers must block for the stage's verdict to be "changes requested".
    quorum: int = 1
    loop_back: LoopBack | None = None
    artifacts: str = "none"
    options: Mapping[str, Any] | None = None

    @property
    def judges(self) -> bool:
        """Whether the stage yields a verdict."""
        return bool(self.blocking_pattern)


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    description: str
    stages: tuple[StageTemplate, ...]
    source: str
    # The validated mapping, kept so a workflow can store the template it was accepted with.
    raw: Mapping[str, Any]

    def stage(self, name: str) -> StageTemplate:
        return next(s for s in self.stages if s.name == name)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, **self.raw}, sort_keys=True)

    def descendants(self, name: str) -> set[str]:
        """Stages that depend on ``name``, directly or not (not including it)."""
        out: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for s in self.stages:
                if current in s.depends_on and s.name not in out:
                    out.add(s.name)
                    frontier.append(s.name)
        return out

    def ancestors(self, name: str) -> set[str]:
        out: set[str] = set()
        frontier = list(self.stage(name).depends_on)
        while frontier:
            current = frontier.pop()
            if current not in out:
                out.add(current)
                frontier.extend(self.stage(current).depends_on)
        return out


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{{name}}`` placeholders; unknown names were refused when the template loaded."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)


def _err(source: str, key: str, reason: str) -> ConfigError:
    return ConfigError(source, key, reason)


def _str(
    source: str, data: Mapping[str, Any], key: str, path: str, default: str | None = None
) -> str:
    value = data.get(key, default)
    if value is None:
        raise _err(source, f"{path}.{key}" if path else key, "required")
    if not isinstance(value, str):
        raise _err(
            source,
            f"{path}.{key}" if path else key,
            f"expected a string, got {type(value).__name__}",
        )
    return value


def _int(
    source: str, data: Mapping[str, Any], key: str, path: str, default: int, lo: int, hi: int
) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _err(source, f"{path}.{key}", f"expected an integer from {lo} to {hi}, got {value!r}")
    return value


def _reject_unknown(source: str, data: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in data:
        if key not in allowed:
            raise _err(
                source,
                f"{path}.{key}" if path else str(key),
                f"unknown key; expected one of {', '.join(sorted(allowed))}",
            )


def _check_placeholders(source: str, key: str, text: str, allowed: set[str]) -> None:
    for match in PLACEHOLDER.finditer(text):
        if match.group(1) not in allowed:
            raise _err(
                source,
                key,
                f"unknown placeholder {{{{{match.group(1)}}}}}; known here: "
                f"{', '.join(sorted(allowed))} (a stage's output is known only downstream of it)",
            )


def parse_pipeline(data: Any, source: str, default_name: str = "") -> Pipeline:
    """Validate one template mapping; raise ConfigError naming the file, key and reason."""
    if not isinstance(data, Mapping):
        raise _err(source, "<top>", f"expected a mapping, got {type(data).__name__}")
    _reject_unknown(source, data, {"name", "description", "stages"}, "")
    name = _str(source, data, "name", "", default_name or None)
    if not NAME.match(name):
        raise _err(source, "name", f"{name!r} does not match {NAME.pattern}")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise _err(source, "stages", "expected a non-empty list of stages")
    names: list[str] = []
    for i, raw in enumerate(raw_stages):
        if not isinstance(raw, Mapping):
            raise _err(source, f"stages[{i}]", "expected a mapping")
        stage_name = _str(source, raw, "name", f"stages[{i}]")
        if not NAME.match(stage_name):
            raise _err(source, f"stages[{i}].name", f"{stage_name!r} does not match {NAME.pattern}")
        if stage_name in names or stage_name in BUILTIN_VARS or stage_name == "reviews":
            raise _err(source, f"stages[{i}].name", f"{stage_name!r} is used twice or reserved")
        names.append(stage_name)
    deps: dict[str, tuple[str, ...]] = {}
    for i, raw in enumerate(raw_stages):
        path = f"stages[{i}]"
        value = raw.get("depends_on", [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _err(source, f"{path}.depends_on", "expected a list of stage names")
        for dep in value:
            if dep not in names:
                raise _err(
                    source,
                    f"{path}.depends_on",
                    f"unknown stage {dep!r}; stages: {', '.join(names)}",
                )
        deps[names[i]] = tuple(value)
    cycle = _find_cycle(deps)
    if cycle:
        raise _err(source, "stages", f"dependency cycle: {' -> '.join(cycle)}")
    ancestors = {n: _ancestors(n, deps) for n in names}
    stages: list[StageTemplate] = []
    for i, raw in enumerate(raw_stages):
        path = f"stages[{i}]"
        stage_name = names[i]
        _reject_unknown(
            source,
            raw,
            {
                "name", "type", "model", "prompt", "system", "depends_on", "reviewers",
                "merge", "blocking_pattern", "quorum", "loop_back", "artifacts", "options",
            },
            path,
        )  # fmt: skip
        type_name = _str(source, raw, "type", path)
        if type_name not in TASK_TYPES:
            raise _err(
                source, f"{path}.type", f"{type_name!r} is not one of {', '.join(TASK_TYPES)}"
            )
        model = _str(source, raw, "model", path)
        if not model or any(c.isspace() for c in model):
            raise _err(source, f"{path}.model", f"{model!r} is not a model name")
        allowed = set(BUILTIN_VARS) | ancestors[stage_name]
        prompt = _str(source, raw, "prompt", path)
        _check_placeholders(source, f"{path}.prompt", prompt, allowed)
        system = _str(source, raw, "system", path, "")
        _check_placeholders(source, f"{path}.system", system, allowed)
        reviewers = _int(source, raw, "reviewers", path, 1, 1, MAX_REVIEWERS)
        merge = None
        if "merge" in raw:
            m = raw["merge"]
            if not isinstance(m, Mapping):
                raise _err(source, f"{path}.merge", "expected a mapping with model and prompt")
            _reject_unknown(source, m, {"model", "prompt"}, f"{path}.merge")
            merge = MergeSpec(
                _str(source, m, "model", f"{path}.merge", model),
                _str(source, m, "prompt", f"{path}.merge"),
            )
            _check_placeholders(source, f"{path}.merge.prompt", merge.prompt, allowed | {"reviews"})
        blocking = _str(source, raw, "blocking_pattern", path, "")
        if blocking == "default":
            blocking = DEFAULT_BLOCKING
        if blocking:
            try:
                re.compile(blocking)
            except re.error as exc:
                raise _err(
                    source, f"{path}.blocking_pattern", f"not a regular expression: {exc}"
                ) from None
        quorum = _int(source, raw, "quorum", path, 1, 1, reviewers)
        loop = None
        if "loop_back" in raw:
            lb = raw["loop_back"]
            if not isinstance(lb, Mapping):
                raise _err(source, f"{path}.loop_back", "expected a mapping with to and max")
            _reject_unknown(source, lb, {"to", "max"}, f"{path}.loop_back")
            to = _str(source, lb, "to", f"{path}.loop_back")
            if to not in ancestors[stage_name]:
                raise _err(
                    source,
                    f"{path}.loop_back.to",
                    f"{to!r} is not upstream of {stage_name!r}; a loop goes back to an "
                    f"earlier stage: {', '.join(sorted(ancestors[stage_name])) or 'none'}",
                )
            if not blocking:
                raise _err(
                    source,
                    f"{path}.loop_back",
                    "needs blocking_pattern (a verdict) to decide when to loop; "
                    "use blocking_pattern: default",
                )
            loop = LoopBack(to, _int(source, lb, "max", f"{path}.loop_back", 1, 1, MAX_LOOPS))
        artifacts = _str(source, raw, "artifacts", path, "none")
        if artifacts not in ARTIFACT_KINDS:
            raise _err(
                source,
                f"{path}.artifacts",
                f"{artifacts!r} is not one of {', '.join(ARTIFACT_KINDS)}",
            )
        options = raw.get("options")
        if options is not None and not isinstance(options, Mapping):
            raise _err(source, f"{path}.options", "expected a mapping of Ollama options")
        if reviewers > 1 and merge is None and not blocking:
            raise _err(
                source,
                f"{path}.reviewers",
                "several reviewers need a merge step or a blocking_pattern to combine verdicts",
            )
        stages.append(
            StageTemplate(
                name=stage_name,
                type=TASK_TYPES[type_name],
                model=model,
                prompt=prompt,
                depends_on=deps[stage_name],
                system=system,
                reviewers=reviewers,
                merge=merge,
                blocking_pattern=blocking,
                quorum=quorum,
                loop_back=loop,
                artifacts=artifacts,
                options=dict(options) if options else None,
            )
        )
    raw_copy = {k: v for k, v in data.items() if k != "name"}
    return Pipeline(name, str(data.get("description", "")), tuple(stages), source, raw_copy)


def _ancestors(name: str, deps: Mapping[str, tuple[str, ...]]) -> set[str]:
    out: set[str] = set()
    frontier = list(deps[name])
    while frontier:
        current = frontier.pop()
        if current not in out:
            out.add(current)
            frontier.extend(deps[current])
    return out


def _find_cycle(deps: Mapping[str, tuple[str, ...]]) -> list[str]:
    """A dependency cycle as a path of stage names (first == last), or [] if none."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(deps, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        color[node] = GREY
        stack.append(node)
        for dep in deps[node]:
            if color[dep] == GREY:
                return [*stack[stack.index(dep) :], dep]
            if color[dep] == WHITE:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        color[node] = BLACK
        return []

    for node in deps:
        if color[node] == WHITE:
            found = visit(node)
            if found:
                return found
    return []


def load_pipeline_file(path: Path) -> Pipeline:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), "<file>", exc.strerror or str(exc)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "<yaml>", str(exc).replace("\n", " ")) from None
    return parse_pipeline(data, str(path), default_name=path.stem)


def pipeline_from_json(text: str, source: str) -> Pipeline:
    data = json.loads(text)
    return parse_pipeline(data, source)


class PipelineCatalog:
    """The templates a coordinator knows: the shipped ones, then user directories in order
    (a later file with the same name replaces an earlier one)."""

    def __init__(self, pipelines: Iterable[Pipeline]) -> None:
        self._pipelines: dict[str, Pipeline] = {}
        for p in pipelines:
            self._pipelines[p.name] = p

    @classmethod
    def load(cls, directories: Sequence[str | Path] = ()) -> PipelineCatalog:
        found: list[Pipeline] = []
        shipped = resources.files("coordinator.workflows") / "pipelines"
        for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
            if entry.name.endswith((".yaml", ".yml")):
                with resources.as_file(entry) as path:
                    found.append(load_pipeline_file(path))
        for directory in directories:
            if not directory:
                continue
            d = Path(directory)
            if not d.is_dir():
                raise ConfigError(str(d), "<directory>", "not a directory of pipeline YAML files")
            for path in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
                found.append(load_pipeline_file(path))
        return cls(found)

    def names(self) -> list[str]:
        return sorted(self._pipelines)

    def get(self, name: str) -> Pipeline | None:
        return self._pipelines.get(name)

    def add(self, pipeline: Pipeline) -> None:
        self._pipelines[pipeline.name] = pipeline
