"""How long answers run, learned per task type and model from finished tasks.

The router prices a task's decode time from an estimate of its answer's length. A client
rarely says (``num_predict`` is a cap, not a forecast), and fixed defaults per task type
know nothing of the models and prompts a team actually uses. This keeps the answer
lengths (``eval_count``) of recent finished tasks per (type, model) and per type, and
estimates a new task's as their mean: the quantity the simulator gives the router
(``output_estimate: mean``) and the one the expected-completion objective needs. Answers
cut off by their ``num_predict`` are not recorded: their length is the cap, not the
model's. Sans-IO; the dispatcher feeds it.
"""

from __future__ import annotations

from collections import deque


class AnswerLengths:
    """Mean answer length over a window, per (task type, model), falling back to the
    task type over all models, then to nothing (the caller's default)."""

    def __init__(self, window: int = 256, min_samples: int = 8) -> None:
        if window < 1 or min_samples < 1:
            raise ValueError("window and min_samples must be at least 1")
        self.window = window
        self.min_samples = min(min_samples, window)
        self._by_model: dict[tuple[str, str], deque[int]] = {}
        self._by_type: dict[str, deque[int]] = {}

    def observe(self, task_type: str, model: str, tokens: int) -> None:
        """A task of ``task_type`` on ``model`` finished with an answer of ``tokens``."""
        if tokens <= 0:
            return
        by_model = self._by_model.get((task_type, model))
        if by_model is None:
            by_model = self._by_model[(task_type, model)] = deque(maxlen=self.window)
        by_model.append(tokens)
        by_type = self._by_type.get(task_type)
        if by_type is None:
            by_type = self._by_type[task_type] = deque(maxlen=self.window)
        by_type.append(tokens)

    def estimate(self, task_type: str, model: str) -> int | None:
        """Expected answer tokens for a new task; None until ``min_samples`` answers of
        its type (on this model, else on any) have been seen."""
        for line in (self._by_model.get((task_type, model)), self._by_type.get(task_type)):
            if line is not None and len(line) >= self.min_samples:
                return max(1, round(sum(line) / len(line)))
        return None
