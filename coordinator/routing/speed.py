"""Measured speeds and error rates, learned from finished tasks.

Ollama reports, on a request's final line, ``eval_count``/``eval_duration`` (decoding)
and ``prompt_eval_count``/``prompt_eval_duration`` (prompt evaluation), durations in
nanoseconds. The tracker keeps an exponentially weighted moving average (EWMA) of each
speed per (node, endpoint, model), and of the failure indicator per endpoint, and hands
the router immutable copies. Decode speed measured while ``concurrency`` requests shared
the model's batch is divided back to a single-stream speed with the same batching model
the router applies, so the router does not count the batch slowdown twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.routing.scorers import BATCH_SLOWDOWN
from coordinator.routing.snapshot import EndpointKey, SpeedEstimate, SpeedKey
from hive import hardware

# A load shorter than the runner's fixed start-up plus this much read the file from the
# page cache (or nothing at all): it says nothing about the disk.
_MIN_READ_SECONDS = 0.05


@dataclass(slots=True)
class _Ewma:
    decode_tps: float
    prompt_tps: float
    samples: int


class SpeedTracker:
    """EWMA of tokens/s per (node, endpoint, model) and error rate per (node, endpoint).

    ``alpha`` weights the newest observation (0.2: about the last ten tasks matter);
    ``error_alpha`` does the same for failures. Not thread-safe: one owner updates it.
    """

    def __init__(self, alpha: float = 0.2, error_alpha: float = 0.1) -> None:
        if not 0.0 < alpha <= 1.0 or not 0.0 < error_alpha <= 1.0:
            raise ValueError("alpha and error_alpha must be in (0, 1]")
        self.alpha = alpha
        self.error_alpha = error_alpha
        self._speeds: dict[SpeedKey, _Ewma] = {}
        self._errors: dict[EndpointKey, float] = {}
        # Disk-to-VRAM bytes/s per endpoint, from the loads tasks waited for.
        self._load_rates: dict[EndpointKey, float] = {}
        self._frozen_speeds: dict[SpeedKey, SpeedEstimate] | None = None
        self._frozen_errors: dict[EndpointKey, float] | None = None

    def observe(
        self,
        node: str,
        endpoint_id: str,
        model: str,
        *,
        ok: bool,
        eval_count: int = 0,
        eval_duration_ns: int = 0,
        prompt_eval_count: int = 0,
        prompt_eval_duration_ns: int = 0,
        concurrency: float = 1.0,
        load_duration_ns: int = 0,
        model_bytes: int = 0,
    ) -> None:
        """Record one finished attempt. Failed attempts only move the error rate; speeds
        need at least one token and a positive duration. A load the attempt waited for
        (``load_duration_ns`` of a ``model_bytes`` model) updates the endpoint's disk
        speed, which prices every model's cold load there."""
        ekey = (node, endpoint_id)
        prev = self._errors.get(ekey, 0.0)
        self._errors[ekey] = prev + self.error_alpha * ((0.0 if ok else 1.0) - prev)
        self._frozen_errors = None
        if not ok:
            return
        read = load_duration_ns / 1e9 - hardware.LOAD_FIXED_SECONDS
        if model_bytes > 0 and read > _MIN_READ_SECONDS:
            rate = model_bytes / read
            old = self._load_rates.get(ekey)
            self._load_rates[ekey] = rate if old is None else old + self.alpha * (rate - old)
        decode = (
            eval_count / (eval_duration_ns / 1e9)
            if eval_count > 0 and eval_duration_ns > 0
            else None
        )
        prompt = (
            prompt_eval_count / (prompt_eval_duration_ns / 1e9)
            if prompt_eval_count > 0 and prompt_eval_duration_ns > 0
            else None
        )
        if decode is None and prompt is None:
            return
        if decode is not None and concurrency > 1.0:
            decode *= 1.0 + BATCH_SLOWDOWN * (concurrency - 1.0)
        skey = (node, endpoint_id, model)
        cur = self._speeds.get(skey)
        if cur is None:
            # Until a prompt speed is seen, assume the hardware model's ratio to decoding.
            d = decode if decode is not None else (prompt or 0.0) / 12.0
            p = prompt if prompt is not None else d * 12.0
            self._speeds[skey] = _Ewma(d, p, 1)
        else:
            a = self.alpha
            if decode is not None:
                cur.decode_tps += a * (decode - cur.decode_tps)
            if prompt is not None:
                cur.prompt_tps += a * (prompt - cur.prompt_tps)
            cur.samples += 1
        self._frozen_speeds = None

    def speeds(self) -> dict[SpeedKey, SpeedEstimate]:
        """The snapshot's ``speeds``: an immutable estimate per measured (node, endpoint,
        model). The same dict is returned until the next observation: do not mutate it."""
        if self._frozen_speeds is None:
            self._frozen_speeds = {
                k: SpeedEstimate(v.decode_tps, v.prompt_tps, v.samples)
                for k, v in self._speeds.items()
            }
        return self._frozen_speeds

    def load_rates(self) -> dict[EndpointKey, float]:
        """Measured disk-to-VRAM bytes/s per endpoint (absent: never seen a load)."""
        return self._load_rates

    def error_rates(self) -> dict[EndpointKey, float]:
        """The snapshot's ``error_rates`` (same sharing rule as ``speeds``)."""
        if self._frozen_errors is None:
            self._frozen_errors = dict(self._errors)
        return self._frozen_errors

    def forget_node(self, node: str) -> None:
        """Drop a node's measurements (it was replaced by different hardware)."""
        self._speeds = {k: v for k, v in self._speeds.items() if k[0] != node}
        self._errors = {k: v for k, v in self._errors.items() if k[0] != node}
        self._load_rates = {k: v for k, v in self._load_rates.items() if k[0] != node}
        self._frozen_speeds = None
        self._frozen_errors = None
