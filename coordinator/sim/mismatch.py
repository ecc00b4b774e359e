"""Mismatch mode: a simulated cluster that disagrees with the router's priors.

The router prices work from ``hive.hardware``'s catalog (decode speed from GPU bandwidth
and model size, load time from a disk speed) and from answer lengths it learns. A
simulator that runs on exactly those numbers never tests a wrong prior. With mismatch
``sigma`` > 0 the simulated truth is the catalog's number times a seeded lognormal
factor (median 1, ``exp(N(0, sigma))``):

- each endpoint's decode and prompt speed, times a factor per endpoint and one per model
  (a card that runs hot or cold, a quantisation the catalog does not describe);
- each endpoint's model load time, times a factor per endpoint (its disk, its PCIe);
- each model's answer lengths, times a factor per model (a chatty or a terse model).

The router sees none of it: its speed priors stay the catalog's, and instead of each
task type's exact mean answer length it is told what production's dispatcher would say,
the mean of the answers it has seen (``coordinator.routing.lengths.AnswerLengths``), or
the task type's default before it has seen enough. It learns speeds and load rates from
finished tasks through ``SpeedTracker`` as in production.

A factor depends only on the run's seed, sigma and the thing's name (an endpoint's
``node/id``, a model's name), not on the order things are drawn in: the same seed gives
the same cluster for every policy. Sigma 0 is off, and reproduces the runs without it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# What a factor applies to.
ENDPOINT_SPEED = "endpoint_speed"
MODEL_SPEED = "model_speed"
ENDPOINT_LOAD = "endpoint_load"
ANSWER_LENGTH = "answer_length"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The seeded factors between the router's priors and the simulated truth."""

    sigma: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ValueError(f"mismatch sigma must be >= 0, got {self.sigma!r}")

    @property
    def on(self) -> bool:
        return self.sigma > 0

    def factor(self, what: str, name: str) -> float:
        """The truth over the prior for ``what`` of ``name``: 1.0 when off, else a
        lognormal draw seeded by (seed, what, name); a string seed is hashed with SHA-512
        by ``random``, so the draw is the same in every process."""
        if self.sigma == 0:
            return 1.0
        rng = random.Random(f"hive-sim-mismatch:{self.seed}:{what}:{name}")
        return math.exp(rng.gauss(0.0, self.sigma))

    def speed(self, node: str, endpoint: str, model: str) -> float:
        """True speed over the catalog's for ``model`` on an endpoint."""
        return self.factor(ENDPOINT_SPEED, f"{node}/{endpoint}") * self.factor(MODEL_SPEED, model)

    def load(self, node: str, endpoint: str) -> float:
        """True model load time over the catalog's on an endpoint."""
        return self.factor(ENDPOINT_LOAD, f"{node}/{endpoint}")

    def length(self, model: str) -> float:
        """True answer length over the workload's distribution for ``model``."""
        return self.factor(ANSWER_LENGTH, model)
