"""Pipeline templates: YAML files that say which stages a workflow runs and how they connect.

A template is a DAG of stages. Each stage names its task type, its model, a prompt
template and the stages it depends on; a review stage may fan out to several reviewers
whose verdicts a merge step combines, and may loop back once to an earlier stage when the
verdict asks for changes. The shipped templates live next to this module in
``pipelines/``; user templates come from extra directories and override shipped ones of
the same name. Every error names the file, the key and the reason (``ConfigError``).

Loading is linear in the template's size (no recursion, so no depth can crash it) and a
template has at most ``MAX_STAGES`` stages: a workflow's every step reads all its stages.

Prompt templates use ``{{name}}`` placeholders: ``requirements``, ``language``, ``name``
(the workflow's), ``feedback`` (notes of a loop-back, empty otherwise), the name of any
upstream stage (its output), and in a merge prompt ``reviews`` (all reviewers' notes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
# Stages per pipeline. Each workflow event copies every stage of its workflow and each
# scheduling step looks at all of them, so a workflow costs O(stages^2) on the event loop:
# at this size 1.5 ms an event, about 1 s of CPU over a workflow's life. Real pipelines
# have a handful of stages.
MAX_STAGES = 256


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
    # Indexes over ``stages``, so the engine's questions cost O(1) or O(stages + edges).
    _by_name: Mapping[str, StageTemplate] = field(init=False, repr=False, compare=False)
    _dependents: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        dependents: dict[str, list[str]] = {s.name: [] for s in self.stages}
        for s in self.stages:
            for dep in s.depends_on:
                dependents[dep].append(s.name)
        object.__setattr__(self, "_by_name", {s.name: s for s in self.stages})
        object.__setattr__(self, "_dependents", {k: tuple(v) for k, v in dependents.items()})

    def stage(self, name: str) -> StageTemplate:
        return self._by_name[name]

    def to_json(self) -> str:
        return json.dumps({"name": self.name, **self.raw}, sort_keys=True)

    def descendants(self, name: str) -> set[str]:
        """Stages that depend on ``name``, directly or not (not including it)."""
        return _reachable(name, self._dependents.__getitem__)

    def ancestors(self, name: str) -> set[str]:
        """Stages ``name`` depends on, directly or not (not including it)."""
        return _reachable(name, lambda s: self._by_name[s].depends_on)


def _reachable(start: str, edges: Callable[[str], Iterable[str]]) -> set[str]:
    """Every node reachable from ``start`` along ``edges``: an iterative walk that visits
    each node and edge once."""
    out: set[str] = set()
    frontier = list(edges(start))
    while frontier:
        current = frontier.pop()
        if current not in out:
            out.add(current)
            frontier.extend(edges(current))
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


@dataclass(frozen=True, slots=True)
class _Upstream:
    """The stages upstream of one stage: a bit set over the stages' positions."""

    names: Sequence[str]
    position: Mapping[str, int]
    bits: int

    def __contains__(self, name: object) -> bool:
        i = self.position.get(name) if isinstance(name, str) else None
        return i is not None and (self.bits >> i) & 1 == 1

    def listed(self) -> list[str]:
        """The names, sorted (for error messages)."""
        return sorted(n for n in self.names if n in self)


def _check_placeholders(
    source: str, key: str, text: str, upstream: _Upstream, extra: frozenset[str] = frozenset()
) -> None:
    fixed = BUILTIN_VARS | extra
    for match in PLACEHOLDER.finditer(text):
        name = match.group(1)
        if name not in fixed and name not in upstream:
            known = sorted({*fixed, *upstream.listed()})
            raise _err(
                source,
                key,
                f"unknown placeholder {{{{{name}}}}}; known here: "
                f"{', '.join(known)} (a stage's output is known only downstream of it)",
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
    if len(raw_stages) > MAX_STAGES:
        first_over = raw_stages[MAX_STAGES]
        over = first_over.get("name") if isinstance(first_over, Mapping) else None
        raise _err(
            source,
            f"stages[{MAX_STAGES}]",
            f"{'stage ' + repr(over) if isinstance(over, str) else 'this stage'} is number "
            f"{MAX_STAGES + 1} of {len(raw_stages)}; a pipeline has at most {MAX_STAGES} stages",
        )
    names: list[str] = []
    position: dict[str, int] = {}  # of each stage in the list (for O(1) look-ups)
    for i, raw in enumerate(raw_stages):
        if not isinstance(raw, Mapping):
            raise _err(source, f"stages[{i}]", "expected a mapping")
        stage_name = _str(source, raw, "name", f"stages[{i}]")
        if not NAME.match(stage_name):
            raise _err(source, f"stages[{i}].name", f"{stage_name!r} does not match {NAME.pattern}")
        if stage_name in position or stage_name in BUILTIN_VARS or stage_name == "reviews":
            raise _err(source, f"stages[{i}].name", f"{stage_name!r} is used twice or reserved")
        position[stage_name] = len(names)
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
            if dep not in position:
                raise _err(
                    source,
                    f"{path}.depends_on",
                    f"unknown stage {dep!r}; stages: {', '.join(names)}",
                )
        deps[names[i]] = tuple(value)
    order, cycle = _topological_order(deps)
    if cycle:
        raise _err(
            source,
            f"stages[{position[cycle[0]]}].depends_on",
            f"dependency cycle: {' -> '.join(cycle)} (each stage depends on the next)",
        )
    upstream = _upstream(names, position, deps, order)
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
        above = upstream[stage_name]
        prompt = _str(source, raw, "prompt", path)
        _check_placeholders(source, f"{path}.prompt", prompt, above)
        system = _str(source, raw, "system", path, "")
        _check_placeholders(source, f"{path}.system", system, above)
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
            _check_placeholders(
                source, f"{path}.merge.prompt", merge.prompt, above, frozenset({"reviews"})
            )
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
            if to not in above:
                raise _err(
                    source,
                    f"{path}.loop_back.to",
                    f"{to!r} is not upstream of {stage_name!r}; a loop goes back to an "
                    f"earlier stage: {', '.join(above.listed()) or 'none'}",
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


def _topological_order(deps: Mapping[str, tuple[str, ...]]) -> tuple[list[str], list[str]]:
    """Kahn's algorithm: the stages in an order where each follows its dependencies, and a
    dependency cycle as stage names, each depending on the next, first == last ([] if none).

    O(stages + edges), no recursion. When no stage is left whose dependencies are all
    placed, each stage left has a dependency among those left (it is in a cycle or
    downstream of one), so following such dependencies from any of them must come back to
    a stage already passed: the walk from there on is a cycle.
    """
    waiting = {name: len(ds) for name, ds in deps.items()}
    dependents: dict[str, list[str]] = {name: [] for name in deps}
    for name, ds in deps.items():
        for dep in ds:
            dependents[dep].append(name)
    free = [name for name, n in waiting.items() if n == 0]
    order: list[str] = []
    while free:
        name = free.pop()
        order.append(name)
        for other in dependents[name]:
            waiting[other] -= 1
            if waiting[other] == 0:
                free.append(other)
    if len(order) == len(deps):
        return order, []
    node = next(name for name in deps if waiting[name])  # the first listed stage left
    passed: dict[str, int] = {}
    walk: list[str] = []
    while node not in passed:
        passed[node] = len(walk)
        walk.append(node)
        node = next(dep for dep in deps[node] if waiting[dep])
    return order, [*walk[passed[node] :], node]


def _upstream(
    names: Sequence[str],
    position: Mapping[str, int],
    deps: Mapping[str, tuple[str, ...]],
    order: Sequence[str],
) -> dict[str, _Upstream]:
    """Each stage's upstream set, built in topological order: a stage's bits are its
    dependencies' bits and the dependencies themselves. Time O(edges * stages / 64) word
    operations and stages^2 / 8 bytes at most (8 KiB at MAX_STAGES): checking a
    placeholder or a loop target is then one bit test."""
    bits: dict[str, int] = {}
    for name in order:
        b = 0
        for dep in deps[name]:
            b |= bits[dep] | (1 << position[dep])
        bits[name] = b
    return {name: _Upstream(names, position, bits[name]) for name in names}


# libyaml's safe loader where PyYAML has it: 4x faster than the pure-Python one, which
# dominates loading a large template (about 4 s for 10,000 stages).
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_pipeline_file(path: Path) -> Pipeline:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), "<file>", exc.strerror or str(exc)) from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
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
