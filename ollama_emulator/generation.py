"""One request's life on a slot: evaluate the prompt, then emit tokens at the modelled speed.

Speeds come from ``hive.hardware`` for the endpoint's GPUs. The durations a response
reports are the modelled hardware times, not wall time divided by anything, so
``eval_count / eval_duration`` reads as the modelled GPU's speed at any ``time_scale``
(and is still meaningful at ``time_scale=0``, where nothing sleeps).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from hive import hardware
from ollama_emulator.scheduler import EmulatorStats, Lease, Phase, Scheduler
from ollama_emulator.text import Output

# Batched decoding: each extra concurrent request on a model slows every one of them by this.
BATCH_SLOWDOWN = 0.25
# Below this many seconds of owed sleep, only yield: asyncio cannot sleep that precisely.
_MIN_SLEEP_SECONDS = 0.002


def decode_rate(single: float, batch: int, models_decoding: int) -> float:
    """Tokens per second for one request when ``batch`` requests decode the same model.

    ``per_request = single / (1 + 0.25 * (batch - 1)) / models_decoding``

    llama.cpp decodes a model's parallel slots as one batch: the weights are read once per
    step for all of them, so the aggregate ``batch * per_request`` rises sub-linearly and
    approaches 4x a single stream. Different models on one endpoint do not batch together;
    they take turns on the GPU, hence the division by the number of models decoding.
    """
    batch = max(1, batch)
    return single / (1.0 + BATCH_SLOWDOWN * (batch - 1)) / max(1, models_decoding)


@dataclass(frozen=True, slots=True)
class Timings:
    """Modelled seconds, as Ollama reports them (in nanoseconds) on the final line."""

    queued: float
    load: float
    prompt_eval: float
    eval: float

    @property
    def total(self) -> float:
        return self.queued + self.load + self.prompt_eval + self.eval


class Generation:
    """Runs one answer on a leased slot and gives the slot back exactly once.

    ``pieces()`` is consumed by the HTTP layer (streamed or collected); ``close()`` must be
    called in a ``finally`` whatever happened: it releases the slot and counts the request
    as completed if every piece was produced, or as cancelled if the client went away.
    """

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        lease: Lease,
        stats: EmulatorStats,
        clock: Callable[[], float],
        prompt_tokens: int,
        output: Output,
    ) -> None:
        self._scheduler = scheduler
        self._lease = lease
        self._stats = stats
        self._clock = clock
        self.prompt_tokens = prompt_tokens
        self.output = output
        self.finished = False
        self.eval_count = 0
        self._closed = False
        self._prompt_seconds = 0.0
        self._eval_seconds = 0.0

    @property
    def timings(self) -> Timings:
        scale = self._scheduler.time_scale
        # Queue time is measured on the clock, so undo the time scale to report it modelled.
        queued = self._lease.queued_seconds / scale if scale > 0 else 0.0
        return Timings(queued, self._lease.load_seconds, self._prompt_seconds, self._eval_seconds)

    async def pieces(self) -> AsyncIterator[str]:
        runner = self._lease.runner
        gpus = self._scheduler.gpus
        pace = _Pacer(self._scheduler, self._clock)
        self._lease.phase = Phase.PROMPT
        self._prompt_seconds = self.prompt_tokens / hardware.prompt_tokens_per_second(
            gpus, runner.kind
        )
        await pace.spend(self._prompt_seconds)
        self._lease.phase = Phase.DECODE
        single = hardware.decode_tokens_per_second(gpus, runner.kind)
        for piece in self.output.pieces():
            rate = decode_rate(
                single, runner.count(Phase.DECODE), self._scheduler.decoding_models()
            )
            self._eval_seconds += 1.0 / rate
            await pace.spend(1.0 / rate)
            self.eval_count += 1
            yield piece
        self._lease.phase = Phase.IDLE
        self.finished = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._lease.phase = Phase.IDLE
        self._scheduler.release(self._lease)
        if self.finished:
            self._stats.completed_total += 1
        else:
            self._stats.cancelled_total += 1


class _Pacer:
    """Sleeps off modelled time against a running deadline.

    Short owed intervals accumulate until they are worth a real sleep, and time lost to
    overhead is caught up, so the average speed matches the model even when a fast GPU's
    per-token time is below what ``asyncio.sleep`` can resolve.
    """

    def __init__(self, scheduler: Scheduler, clock: Callable[[], float]) -> None:
        self._scheduler = scheduler
        self._clock = clock
        self._deadline = clock()

    async def spend(self, modelled_seconds: float) -> None:
        scale = self._scheduler.time_scale
        if scale == 0.0:
            await asyncio.sleep(0)
            return
        self._deadline += modelled_seconds * scale
        owed = self._deadline - self._clock()
        await asyncio.sleep(owed if owed >= _MIN_SLEEP_SECONDS else 0)
