"""What a submitted workflow must be before it is accepted: the checks on a ``Submission``
(requirements, name, language, priority, request id), the pipeline it names or defines
(its own ``pipeline_definition``, validated as the template files are), and whether the
cluster could ever run that pipeline's models. Pure functions the engine calls; each
refusal is an ``InvalidWorkflow`` naming the field at fault, or a ``MissingModel``.
"""

from __future__ import annotations

import json
import re

from coordinator.routing.filters import could_ever_run
from coordinator.routing.snapshot import ClusterSnapshot
from coordinator.workflows.model import PRIORITIES, InvalidWorkflow, MissingModel, Submission
from coordinator.workflows.templates import Pipeline, PipelineCatalog, parse_pipeline
from hive import limits
from hive.config import ConfigError

DEFAULT_PIPELINE = "full"
MAX_REQUIREMENTS_CHARS = 200_000
MAX_NAME_CHARS = 200
MAX_REQUEST_ID_CHARS = 128
# A submitted pipeline definition (JSON); the template files have no such bound.
MAX_DEFINITION_CHARS = 256_000
LANGUAGE = re.compile(r"^[A-Za-z0-9_+#.\- ]{1,40}$")


def validate(sub: Submission, pipelines: PipelineCatalog) -> Pipeline:
    """The pipeline ``sub`` runs, once its fields pass; refused (InvalidWorkflow) naming
    the field at fault."""
    if not sub.requirements.strip():
        raise InvalidWorkflow("requirements", "must not be empty: say what to build")
    if len(sub.requirements) > MAX_REQUIREMENTS_CHARS:
        raise InvalidWorkflow(
            "requirements",
            f"is {len(sub.requirements)} characters; the limit is {MAX_REQUIREMENTS_CHARS}",
        )
    if len(sub.name) > MAX_NAME_CHARS:
        raise InvalidWorkflow("name", f"is longer than {MAX_NAME_CHARS} characters")
    if sub.language and not LANGUAGE.match(sub.language):
        raise InvalidWorkflow("language", f"{sub.language!r} is not a language name")
    if sub.priority not in PRIORITIES.values() and sub.priority != 0:
        raise InvalidWorkflow(
            "priority",
            f"{sub.priority} is not a priority; use one of "
            + ", ".join(f"{n} ({v})" for n, v in PRIORITIES.items()),
        )
    if len(sub.request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidWorkflow("request_id", f"is longer than {MAX_REQUEST_ID_CHARS} characters")
    if sub.pipeline_definition:
        return own_pipeline(sub)
    name = sub.pipeline or DEFAULT_PIPELINE
    pipeline = pipelines.get(name)
    if pipeline is None:
        raise InvalidWorkflow(
            "pipeline", f"unknown pipeline {name!r}; known: {', '.join(pipelines.names())}"
        )
    return pipeline


def check_models(pipeline: Pipeline, snapshot: ClusterSnapshot) -> None:
    """Refuse (MissingModel) a pipeline with a stage whose model no node in ``snapshot``
    could ever run."""
    for t in pipeline.stages:
        for model in (t.model, t.merge.model) if t.merge else (t.model,):
            if not could_ever_run(model, snapshot):
                raise MissingModel(t.name, model)


def own_pipeline(sub: Submission) -> Pipeline:
    """The submitter's own template (``pipeline_definition``), validated as the template
    files are; refused (InvalidWorkflow) naming the key at fault."""
    field_name = "pipeline_definition"
    if sub.pipeline:
        raise InvalidWorkflow(field_name, "send a pipeline's name or a definition, not both")
    if len(sub.pipeline_definition) > MAX_DEFINITION_CHARS:
        raise InvalidWorkflow(
            field_name,
            f"is {len(sub.pipeline_definition)} characters; the limit is {MAX_DEFINITION_CHARS}",
        )
    try:
        data = json.loads(sub.pipeline_definition)
    except ValueError as exc:
        raise InvalidWorkflow(field_name, f"is not JSON: {exc}") from None
    if (found := limits.unrepresentable_at(data)) is not None:
        where = ".".join(map(str, found[0])) or "<top>"
        raise InvalidWorkflow(field_name, f"{where} {limits.NOT_FINITE}")
    if isinstance(data, dict):
        data.setdefault("name", "custom")
    try:
        return parse_pipeline(data, field_name)
    except ConfigError as exc:
        raise InvalidWorkflow(field_name, f"{exc.key}: {exc.reason}") from None


def default_name(requirements: str) -> str:
    """A workflow submitted without a name is called after its requirements' first line."""
    first = requirements.strip().splitlines()[0]
    return first[:60] + ("..." if len(first) > 60 else "")
