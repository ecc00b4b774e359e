"""What the router needs to know about one task: its kind, model, urgency and size."""

from __future__ import annotations

import enum
from dataclasses import dataclass

# The seed's task types plus plain inference (an Ollama/OpenAI API request).
TASK_TYPES: tuple[str, ...] = (
    "inference",
    "code_generation",
    "code_review",
    "testing",
    "compilation",
    "optimization",
    "documentation",
)


class Priority(enum.IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One unit of LLM work. Token counts are the submitter's estimates (the prompt's
    length is known; the answer's is a guess), used only to estimate service time."""

    id: str
    type: str
    model: str
    priority: Priority = Priority.NORMAL
    prompt_tokens: int = 256
    output_tokens: int = 256
    # Absolute time on the scheduler's clock after which the task is failed; None = never.
    deadline: float | None = None
    # Federation: the Hive clusters the request has passed through, this one included; no
    # endpoint leading to one of them may take it (filters.not_a_loop).
    via: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.type not in TASK_TYPES:
            raise ValueError(f"unknown task type {self.type!r}; known: {', '.join(TASK_TYPES)}")
        if self.prompt_tokens < 0 or self.output_tokens < 0:
            raise ValueError("token estimates must not be negative")
