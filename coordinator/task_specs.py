"""A request as the router sees it: its task type, urgency and an estimate of its size
(prompt tokens from its text and images, answer tokens learned, defaulted or capped by
``num_predict``). Pure functions over the ``RunTaskRequest``.
"""

from __future__ import annotations

from coordinator.routing import Priority, TaskSpec
from coordinator.routing.lengths import AnswerLengths
from hive.v1 import common_pb2, node_agent_pb2

# Prompt tokens an image costs a vision model (llava's 576; others differ: an estimate).
IMAGE_PROMPT_TOKENS = 576
# Output tokens assumed when a request does not bound them (num_predict), per task type.
DEFAULT_OUTPUT_TOKENS = {"inference": 256, "code_review": 512, "testing": 768}
DEFAULT_OUTPUT_TOKENS_OTHER = 1024

_PRIORITIES = {
    common_pb2.PRIORITY_UNSPECIFIED: Priority.NORMAL,
    common_pb2.PRIORITY_LOW: Priority.LOW,
    common_pb2.PRIORITY_NORMAL: Priority.NORMAL,
    common_pb2.PRIORITY_HIGH: Priority.HIGH,
}


def task_type_name(value: int) -> str:
    """The router's name of a proto TaskType ("code_review" for TASK_TYPE_CODE_REVIEW);
    unspecified or unknown values are plain inference."""
    if value == common_pb2.TASK_TYPE_UNSPECIFIED:
        return "inference"
    try:
        return common_pb2.TaskType.Name(value).removeprefix("TASK_TYPE_").lower()
    except ValueError:
        return "inference"


def answer_cap(request: node_agent_pb2.RunTaskRequest) -> int:
    """The request's ``num_predict`` when it caps the answer (> 0), else 0."""
    options = request.options.fields
    bound = options["num_predict"].number_value if "num_predict" in options else 0
    return int(bound) if bound > 0 else 0


def answer_estimate(
    request: node_agent_pb2.RunTaskRequest, kind: str, lengths: AnswerLengths | None
) -> tuple[int, str]:
    """Expected answer tokens and where the number came from: "learned_for_cap" (the mean
    answer to requests with this ``num_predict``, once enough have finished), "learned",
    "default" or "num_predict" (the request's cap, when below the other two); an
    embedding has none ("embedding")."""
    if request.WhichOneof("input") == "embed":
        return 0, "embedding"
    cap = answer_cap(request)
    if cap and lengths is not None:
        for_cap = lengths.for_cap(kind, request.model, cap)
        if for_cap is not None:
            return for_cap, "learned_for_cap"
    learned = lengths.estimate(kind, request.model) if lengths is not None else None
    if learned is not None:
        output, source = learned, "learned"
    else:
        output, source = DEFAULT_OUTPUT_TOKENS.get(kind, DEFAULT_OUTPUT_TOKENS_OTHER), "default"
    if cap and cap < output:
        output, source = cap, "num_predict"
    return output, source


def task_spec(
    request: node_agent_pb2.RunTaskRequest,
    priority: int,
    deadline: float | None,
    output_tokens: int | None = None,
) -> TaskSpec:
    """The router's view of a task: type, model, urgency and an estimate of its size.

    ``output_tokens`` is the answer's estimate (``answer_estimate``); without it, the task
    type's default, capped by ``num_predict``."""
    kind = task_type_name(request.type)
    source = request.WhichOneof("input")
    images = 0
    if source == "chat":
        chat = request.chat
        # The tools' schemas are part of the prompt the model reads.
        chars = sum(len(m.content) for m in chat.messages) + sum(map(len, chat.tools))
        images = sum(len(m.images) for m in chat.messages)
    elif source == "embed":
        chars = sum(len(text) for text in request.embed.input)
    else:
        g = request.generate
        chars = len(g.prompt) + len(g.system) + len(g.suffix)
        images = len(g.images)
    output = output_tokens if output_tokens is not None else answer_estimate(request, kind, None)[0]
    return TaskSpec(
        id=request.task_id,
        type=kind,
        model=request.model,
        priority=_PRIORITIES.get(priority, Priority.NORMAL),  # type: ignore[call-overload]
        prompt_tokens=max(1, chars // 4) + images * IMAGE_PROMPT_TOKENS,
        output_tokens=output,
        deadline=deadline,
        via=frozenset(request.via),
    )
