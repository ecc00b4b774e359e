"""How long answers run, learned per task type and model from finished tasks.

The router prices a task's decode time from an estimate of its answer's length. A client
rarely says (``num_predict`` is a cap, not a forecast), and fixed defaults per task type
know nothing of the models and prompts a team actually uses. This keeps the answer
lengths (``eval_count``) of recent finished tasks per (type, model) and per type, and
estimates a new task's as their mean: the quantity the simulator gives the router
(``output_estimate: mean``) and the one the expected-completion objective needs. Answers
cut off by their ``num_predict`` are not recorded there: their length is the cap, not the
model's.

A cap says more than "at most": a client that asks for ``max_tokens: 64`` for one kind of
call and 1024 for another usually gets answers of different lengths back. So the answers
of requests with a cap are also kept per (type, model, cap), cut ones included (for that
cap they are exactly the length there was), and a new request with a cap seen often
enough is estimated by the answers to that cap: the mean given the cap, not the overall
mean cut at the cap. The distinct caps kept are bounded (the least recently seen go).
Sans-IO; the dispatcher feeds it.
"""

from __future__ import annotations

from collections import OrderedDict, deque


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

    def mean(self, min_samples: int) -> int | None:
        """The mean length (at least 1); None with fewer than ``min_samples`` lengths."""
        if len(self.lengths) < min_samples:
            return None
        return max(1, round(self.total / len(self.lengths)))


class AnswerLengths:
    """Mean answer length over a window, per (task type, model), falling back to the
    task type over all models, then to nothing (the caller's default)."""

    # Distinct (type, model, cap) windows kept; the least recently used go first.
    MAX_CAPS = 512
    # Answers kept per cap (a cap's lengths vary less than the type's).
    CAP_WINDOW = 64

    def __init__(self, window: int = 256, min_samples: int = 8) -> None:
        if window < 1 or min_samples < 1:
            raise ValueError("window and min_samples must be at least 1")
        self.window = window
        self.min_samples = min(min_samples, window)
        # Keyed by (task type, model) and by (task type, "") for the type over all models.
        self._windows: dict[tuple[str, str], _Window] = {}
        # Keyed by (task type, model, cap): the answers to requests with that cap.
        self._caps: OrderedDict[tuple[str, str, int], _Window] = OrderedDict()

    def observe(
        self, task_type: str, model: str, tokens: int, cap: int = 0, cut: bool = False
    ) -> None:
        """A task of ``task_type`` on ``model`` finished with an answer of ``tokens``;
        ``cap``: its ``num_predict`` (0: none), ``cut``: the cap ended it ("length")."""
        if tokens <= 0:
            return
        if cap > 0:
            key = (task_type, model, cap)
            w = self._caps.get(key)
            if w is None:
                # Never shorter than min_samples: the cap could not be learned at all.
                size = max(min(self.CAP_WINDOW, self.window), self.min_samples)
                w = self._caps[key] = _Window(size)
                if len(self._caps) > self.MAX_CAPS:
                    self._caps.popitem(last=False)
            else:
                self._caps.move_to_end(key)
            w.add(min(tokens, cap))
        if cut:
            return
        for natural in ((task_type, model), (task_type, "")):
            w = self._windows.get(natural)
            if w is None:
                w = self._windows[natural] = _Window(self.window)
            w.add(tokens)

    def for_cap(self, task_type: str, model: str, cap: int) -> int | None:
        """The mean answer to requests of this type and model with ``cap`` as their
        ``num_predict``; None until ``min_samples`` of them have finished."""
        w = self._caps.get((task_type, model, cap))
        return None if w is None else w.mean(self.min_samples)

    def estimate(self, task_type: str, model: str) -> int | None:
        """Expected answer tokens for a new task; None until ``min_samples`` answers of
        its type (on this model, else on any) have been seen."""
        for key in ((task_type, model), (task_type, "")):
            w = self._windows.get(key)
            mean = None if w is None else w.mean(self.min_samples)
            if mean is not None:
                return mean
        return None
