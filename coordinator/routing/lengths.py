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


class _Window:
    """The last ``size`` answer lengths and their running sum (the estimate is read on
    every submit; summing 256 numbers there each time would be wasted work)."""

    __slots__ = ("lengths", "total")

    def __init__(self, size: int) -> None:
        self.lengths: deque[int] = deque(maxlen=size)
        self.total = 0

    def add(self, tokens: int) -> None:
        if len(self.lengths) == self.lengths.maxlen:
            self.total -= self.lengths[0]
        self.lengths.append(tokens)
        self.total += tokens


class AnswerLengths:
    """Mean answer length over a window, per (task type, model), falling back to the
    task type over all models, then to nothing (the caller's default)."""

    def __init__(self, window: int = 256, min_samples: int = 8) -> None:
        if window < 1 or min_samples < 1:
            raise ValueError("window and min_samples must be at least 1")
        self.window = window
        self.min_samples = min(min_samples, window)
        # Keyed by (task type, model) and by (task type, "") for the type over all models.
        self._windows: dict[tuple[str, str], _Window] = {}

    def observe(self, task_type: str, model: str, tokens: int) -> None:
        """A task of ``task_type`` on ``model`` finished with an answer of ``tokens``."""
        if tokens <= 0:
            return
        for key in ((task_type, model), (task_type, "")):
            w = self._windows.get(key)
            if w is None:
                w = self._windows[key] = _Window(self.window)
            w.add(tokens)

    def estimate(self, task_type: str, model: str) -> int | None:
        """Expected answer tokens for a new task; None until ``min_samples`` answers of
        its type (on this model, else on any) have been seen."""
        for key in ((task_type, model), (task_type, "")):
            w = self._windows.get(key)
            if w is not None and len(w.lengths) >= self.min_samples:
                return max(1, round(w.total / len(w.lengths)))
        return None
