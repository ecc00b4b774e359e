"""The emulator's one typed configuration: what hardware an Ollama instance has and how it is tuned.

The field names follow Ollama's own environment variables (``OLLAMA_NUM_PARALLEL``,
``OLLAMA_MAX_QUEUE``, ``OLLAMA_KEEP_ALIVE``) so that a demo cluster's YAML reads like a
real deployment. Defaults live here and nowhere else; the CLI only overrides what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hive import hardware


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    # The GPUs this Ollama instance spans; their memory adds up to the endpoint's VRAM.
    gpus: list[hardware.GpuKind]
    # Models "on disk", names from hardware.MODEL_CATALOG (a bare name means its first tag).
    models: list[str] = field(default_factory=list)
    # OLLAMA_NUM_PARALLEL: concurrent requests per loaded model.
    num_parallel: int = 4
    # OLLAMA_MAX_QUEUE: requests that may wait for a slot; one more is refused with 503.
    max_queue: int = 512
    # GB/s at which model files are read into VRAM (the host's disk): the load time.
    model_load_gbps: float = hardware.LOAD_BYTES_PER_SECOND / hardware.GB
    # Multiplies every modelled delay; 0.0 never sleeps, which benchmarks use to measure overhead.
    time_scale: float = 1.0
    # Mixed into the output text's seed so that two emulators can disagree deterministically.
    seed: int = 0
    # OLLAMA_KEEP_ALIVE in seconds: how long an idle model stays loaded when a request says nothing.
    default_keep_alive: float = 300.0
    version: str = "0.6.5"

    def __post_init__(self) -> None:
        if not self.gpus:
            raise ValueError("EmulatorConfig.gpus: an Ollama endpoint needs at least one GPU")
        if self.num_parallel < 1:
            raise ValueError(f"EmulatorConfig.num_parallel: must be >= 1, got {self.num_parallel}")
        if self.max_queue < 0:
            raise ValueError(f"EmulatorConfig.max_queue: must be >= 0, got {self.max_queue}")
        if self.model_load_gbps <= 0:
            raise ValueError(
                f"EmulatorConfig.model_load_gbps: must be > 0, got {self.model_load_gbps}"
            )
        if self.time_scale < 0:
            raise ValueError(f"EmulatorConfig.time_scale: must be >= 0, got {self.time_scale}")
        for name in self.models:
            try:
                hardware.model_kind(name)
            except KeyError as e:
                raise ValueError(f"EmulatorConfig.models: {e.args[0]}") from None
