"""GPU telemetry providers: real fallback paths, vendor libraries faked at the module boundary.

This machine has nvidia-ml-py but no NVIDIA driver, so the real ``pynvml``
shows the "no driver" path. The vendor providers' conversions are tested
against fake ``pynvml`` / ``amdsmi`` modules placed in ``sys.modules``: the
provider code under test is the real one, only the C library behind it is
replaced.
"""

from __future__ import annotations

import enum
import logging
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hive.config import GpuSpec
from hive.hardware import GIB, GPU_CATALOG
from node_agent.telemetry import (
    GpuActivity,
    GpuInfo,
    GpuSample,
    ProviderUnavailable,
    TelemetryProvider,
    open_provider,
)
from node_agent.telemetry.amd import AmdSmiProvider
from node_agent.telemetry.none import NoneProvider
from node_agent.telemetry.nvml import NvmlProvider
from node_agent.telemetry.simulated import (
    IDLE_CELSIUS,
    THROTTLE_CELSIUS,
    SimulatedProvider,
)

LOGGER = "test.telemetry"
MIB = 1 << 20


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return logging.getLogger(LOGGER)


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


# --- real pynvml on a driverless host -------------------------------------------------


def real_nvml_failure() -> str:
    """NVML's own reason for not loading here; skips where a driver is present."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return str(exc)
    pynvml.nvmlShutdown()
    pytest.skip("an NVIDIA driver is present; the fallback path cannot be shown here")


@pytest.fixture
def no_amdsmi(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import amdsmi` raise ImportError, as on a host
    # without the optional extra, even if someone installs it in this venv.
    monkeypatch.setitem(sys.modules, "amdsmi", None)


def test_real_nvml_without_driver_is_unavailable_with_nvmls_reason() -> None:
    reason = real_nvml_failure()
    with pytest.raises(ProviderUnavailable) as raised:
        NvmlProvider()
    assert str(raised.value) == reason
    assert reason  # e.g. "NVML Shared Library Not Found"


@pytest.mark.usefixtures("no_amdsmi")
def test_auto_without_gpu_libraries_falls_back_to_none_with_one_log_line(
    log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    reason = real_nvml_failure()
    provider = open_provider("auto", logger=log)
    assert provider.name == "none"
    assert provider.gpus() == [] and provider.sample() == []
    [line] = records(caplog)
    assert f"nvml: {reason}" in line.getMessage()
    assert "amdsmi: amdsmi is not installed" in line.getMessage()
    assert line.getMessage().endswith("using none")


@pytest.mark.usefixtures("no_amdsmi")
def test_auto_never_invents_gpus_from_the_simulated_list(log: logging.Logger) -> None:
    real_nvml_failure()
    provider = open_provider("auto", simulated_gpus=[spec("NVIDIA GeForce RTX 4090")], logger=log)
    assert provider.name == "none"
    assert provider.gpus() == []


def test_explicit_nvml_that_cannot_load_warns_once_and_falls_back(
    log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    reason = real_nvml_failure()
    provider = open_provider("nvml", logger=log)
    assert provider.name == "none"
    [line] = records(caplog)
    assert line.levelno == logging.WARNING
    assert line.getMessage() == f"telemetry: nvml unavailable ({reason}); falling back to none"


@pytest.mark.usefixtures("no_amdsmi")
def test_explicit_amdsmi_that_is_not_installed_warns_once_and_falls_back(
    log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    provider = open_provider("amdsmi", logger=log)
    assert provider.name == "none"
    [line] = records(caplog)
    assert line.levelno == logging.WARNING
    assert line.getMessage().startswith("telemetry: amdsmi unavailable (amdsmi is not installed")


def test_unknown_preference_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown telemetry provider 'cuda'"):
        open_provider("cuda")


# --- NVML against a fake pynvml -------------------------------------------------------

NVML_NOT_SUPPORTED = 3


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {NVML_NOT_SUPPORTED: "Not Supported"}.get(self.value, f"NVML error {self.value}")


@dataclass
class FakeNvidiaGpu:
    name: bytes | str
    uuid: bytes | str
    total: int
    used: int
    util: int
    temperature: int
    power_mw: int
    limit_mw: int
    reasons: int = 0


@dataclass
class FakeNvml:
    """State behind the fake module: the GPUs, which queries fail, how often it was shut."""

    gpus: list[FakeNvidiaGpu]
    failing: set[tuple[str, int]] = field(default_factory=set)
    init_error: int | None = None
    event_reasons: bool = True  # False: an old binding with only the "Throttle" name
    shutdowns: int = 0

    def module(self) -> types.ModuleType:
        m = types.ModuleType("pynvml")
        m.NVMLError = FakeNVMLError  # type: ignore[attr-defined]
        m.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
        gpu = self._query

        def init() -> None:
            if self.init_error is not None:
                raise FakeNVMLError(self.init_error)

        def shutdown() -> None:
            self.shutdowns += 1

        def temperature(h: int, sensor: int) -> int:
            assert sensor == 0
            return gpu("temperature", h).temperature

        functions: dict[str, Callable[..., Any]] = {
            "nvmlInit": init,
            "nvmlShutdown": shutdown,
            "nvmlDeviceGetCount": lambda: len(self.gpus),
            "nvmlDeviceGetHandleByIndex": lambda i: i,
            "nvmlDeviceGetName": lambda h: gpu("name", h).name,
            "nvmlDeviceGetUUID": lambda h: gpu("uuid", h).uuid,
            "nvmlDeviceGetMemoryInfo": lambda h: types.SimpleNamespace(
                total=gpu("memory", h).total,
                used=self.gpus[h].used,
                free=self.gpus[h].total - self.gpus[h].used,
            ),
            "nvmlDeviceGetUtilizationRates": lambda h: types.SimpleNamespace(
                gpu=gpu("utilization", h).util, memory=0
            ),
            "nvmlDeviceGetTemperature": temperature,
            "nvmlDeviceGetPowerUsage": lambda h: gpu("power", h).power_mw,
            "nvmlDeviceGetEnforcedPowerManagementLimit": lambda h: gpu("limit", h).limit_mw,
            "nvmlDeviceGetCurrentClocksThrottleReasons": lambda h: gpu("reasons", h).reasons,
        }
        if self.event_reasons:
            functions["nvmlDeviceGetCurrentClocksEventReasons"] = functions[
                "nvmlDeviceGetCurrentClocksThrottleReasons"
            ]
        for name, fn in functions.items():
            setattr(m, name, fn)
        return m

    def _query(self, what: str, handle: int) -> FakeNvidiaGpu:
        if (what, handle) in self.failing:
            raise FakeNVMLError(NVML_NOT_SUPPORTED)
        return self.gpus[handle]


def two_nvidia_gpus() -> list[FakeNvidiaGpu]:
    return [
        # Older bindings return bytes, newer ones str: one of each.
        FakeNvidiaGpu(
            name=b"NVIDIA GeForce RTX 4090",
            uuid=b"GPU-aaaa",
            total=24 * GIB,
            used=5 * GIB,
            util=97,
            temperature=81,
            power_mw=431_250,
            limit_mw=450_000,
            reasons=0x20,  # SW thermal slowdown
        ),
        FakeNvidiaGpu(
            name="NVIDIA Tesla P4",
            uuid="GPU-bbbb",
            total=8 * GIB,
            used=0,
            util=0,
            temperature=34,
            power_mw=7_500,
            limit_mw=75_000,
            reasons=0x01,  # GPU idle: clocks down, but not throttled
        ),
    ]


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    # The fake functions read the state on every call, so tests change it freely.
    state = FakeNvml(two_nvidia_gpus())
    monkeypatch.setitem(sys.modules, "pynvml", state.module())
    return state


def test_nvml_inventory_decodes_bytes_names(fake_nvml: FakeNvml) -> None:
    provider = NvmlProvider()
    assert provider.gpus() == [
        GpuInfo(0, "GPU-aaaa", "NVIDIA GeForce RTX 4090", "nvidia", 24 * GIB),
        GpuInfo(1, "GPU-bbbb", "NVIDIA Tesla P4", "nvidia", 8 * GIB),
    ]


def test_nvml_sample_converts_milliwatts_and_throttle_bits(fake_nvml: FakeNvml) -> None:
    provider = NvmlProvider()
    assert provider.sample() == [
        GpuSample(0, 97.0, 5 * GIB, 24 * GIB, 81.0, 431.25, 450.0, throttled=True),
        GpuSample(1, 0.0, 0, 8 * GIB, 34.0, 7.5, 75.0, throttled=False),
    ]


@pytest.mark.parametrize(
    ("bits", "throttled"),
    [
        (0x04, True),  # SW power cap
        (0x08, True),  # HW slowdown
        (0x20, True),  # SW thermal
        (0x40, True),  # HW thermal
        (0x80, True),  # HW power brake
        (0x01 | 0x02 | 0x10 | 0x100, False),  # idle, app clocks, sync boost, display
        (0x00, False),
    ],
)
def test_nvml_only_thermal_and_power_reasons_count_as_throttled(
    fake_nvml: FakeNvml, bits: int, throttled: bool
) -> None:
    fake_nvml.gpus[0].reasons = bits
    assert NvmlProvider().sample()[0].throttled is throttled


def test_nvml_old_binding_uses_the_throttle_reasons_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = FakeNvml(two_nvidia_gpus(), event_reasons=False)
    module = state.module()
    assert not hasattr(module, "nvmlDeviceGetCurrentClocksEventReasons")
    monkeypatch.setitem(sys.modules, "pynvml", module)
    assert [s.throttled for s in NvmlProvider().sample()] == [True, False]


def test_nvml_one_failing_query_zeroes_that_field_only(
    fake_nvml: FakeNvml, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    provider = NvmlProvider(log)
    fake_nvml.failing = {("temperature", 0), ("limit", 1)}
    first, second = provider.sample()
    assert first == GpuSample(0, 97.0, 5 * GIB, 24 * GIB, 0.0, 431.25, 450.0, throttled=True)
    assert second == GpuSample(1, 0.0, 0, 8 * GIB, 34.0, 7.5, 0.0, throttled=False)
    provider.sample()
    # One warning per (gpu, field), not one per sample.
    warned = [r.getMessage() for r in records(caplog) if r.levelno == logging.WARNING]
    assert warned == [
        "telemetry: nvml gpu 0: temperature query failed (Not Supported); reporting it as 0",
        "telemetry: nvml gpu 1: power_limit query failed (Not Supported); reporting it as 0",
    ]


def test_nvml_failing_memory_query_keeps_the_inventory_total(fake_nvml: FakeNvml) -> None:
    provider = NvmlProvider()
    fake_nvml.failing = {("memory", 1)}
    sample = provider.sample()[1]
    assert (sample.memory_used_bytes, sample.memory_total_bytes) == (0, 8 * GIB)
    assert sample.power_watts == 7.5


def test_nvml_init_error_is_unavailable_with_its_reason(fake_nvml: FakeNvml) -> None:
    fake_nvml.init_error = 9
    with pytest.raises(ProviderUnavailable, match="NVML error 9"):
        NvmlProvider()


def test_nvml_close_shuts_down_once(fake_nvml: FakeNvml) -> None:
    provider = NvmlProvider()
    provider.close()
    provider.close()
    assert fake_nvml.shutdowns == 1


def test_open_provider_nvml_uses_nvml_and_says_so(
    fake_nvml: FakeNvml, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    provider = open_provider("nvml", logger=log)
    assert provider.name == "nvml"
    assert len(provider.sample()) == 2
    [line] = records(caplog)
    assert line.getMessage() == (
        "telemetry: using nvml (0: NVIDIA GeForce RTX 4090, 1: NVIDIA Tesla P4)"
    )


# --- AMD SMI against a fake amdsmi ----------------------------------------------------


class FakeAmdSmiLibraryException(Exception):
    """The real package exports the subclasses, not its AmdSmiException base."""


class FakeTemperatureType(enum.IntEnum):
    EDGE = 0
    HOTSPOT = 1


class FakeTemperatureMetric(enum.IntEnum):
    CURRENT = 0


@dataclass
class FakeAmdGpu:
    market_name: str
    uuid: str
    vram_total_mib: int
    vram_used_mib: int
    gfx_activity: int | str
    edge: int | None  # None: the card has no edge sensor (MI300)
    hotspot: int
    power: dict[str, Any]
    throttle_status: bool | str


@dataclass
class FakeAmdSmi:
    gpus: list[FakeAmdGpu]
    failing: set[tuple[str, int]] = field(default_factory=set)
    shutdowns: int = 0
    init_flags: list[Any] = field(default_factory=list)

    def module(self) -> types.ModuleType:
        m = types.ModuleType("amdsmi")
        m.AmdSmiLibraryException = FakeAmdSmiLibraryException  # type: ignore[attr-defined]
        m.AmdSmiInitFlags = types.SimpleNamespace(INIT_AMD_GPUS=2)  # type: ignore[attr-defined]
        m.AmdSmiTemperatureType = FakeTemperatureType  # type: ignore[attr-defined]
        m.AmdSmiTemperatureMetric = FakeTemperatureMetric  # type: ignore[attr-defined]
        gpu = self._query

        def temp_metric(h: int, sensor: FakeTemperatureType, metric: FakeTemperatureMetric) -> int:
            assert metric is FakeTemperatureMetric.CURRENT
            g = gpu("temperature", h)
            if sensor is FakeTemperatureType.EDGE:
                if g.edge is None:
                    raise FakeAmdSmiLibraryException("AMDSMI_STATUS_NOT_SUPPORTED")
                return g.edge
            return g.hotspot

        def shut_down() -> None:
            self.shutdowns += 1

        functions: dict[str, Callable[..., Any]] = {
            "amdsmi_init": self.init_flags.append,
            "amdsmi_shut_down": shut_down,
            "amdsmi_get_processor_handles": lambda: list(range(len(self.gpus))),
            "amdsmi_get_gpu_asic_info": lambda h: {"market_name": gpu("name", h).market_name},
            "amdsmi_get_gpu_device_uuid": lambda h: gpu("uuid", h).uuid,
            "amdsmi_get_gpu_vram_usage": lambda h: {
                "vram_total": gpu("memory", h).vram_total_mib,
                "vram_used": self.gpus[h].vram_used_mib,
            },
            "amdsmi_get_gpu_activity": lambda h: {
                "gfx_activity": gpu("activity", h).gfx_activity,
                "umc_activity": "N/A",
                "mm_activity": "N/A",
            },
            "amdsmi_get_temp_metric": temp_metric,
            "amdsmi_get_power_info": lambda h: gpu("power", h).power,
            "amdsmi_get_gpu_metrics_info": lambda h: {
                "throttle_status": gpu("metrics", h).throttle_status
            },
        }
        for name, fn in functions.items():
            setattr(m, name, fn)
        return m

    def _query(self, what: str, handle: int) -> FakeAmdGpu:
        if (what, handle) in self.failing:
            raise FakeAmdSmiLibraryException("AMDSMI_STATUS_API_FAILED")
        return self.gpus[handle]


def two_amd_gpus() -> list[FakeAmdGpu]:
    return [
        # A Navi card on ROCm 6.x: average power only, limit in microwatts.
        FakeAmdGpu(
            market_name="AMD Radeon RX 9060 XT",
            uuid="a1ff7590-0000-1000-80e6-1d1f2c0d",
            vram_total_mib=16 * 1024,
            vram_used_mib=4096,
            gfx_activity=87,
            edge=64,
            hotspot=79,
            power={
                "current_socket_power": "N/A",
                "average_socket_power": 142,
                "power_limit": 160_000_000,
            },
            throttle_status=True,
        ),
        # An MI300-class card: no edge sensor, current power, limit in watts.
        FakeAmdGpu(
            market_name="AMD Instinct MI300X",
            uuid="b2ff74a1-0000-1000-80e6-2e2f3d1e",
            vram_total_mib=192 * 1024,
            vram_used_mib=0,
            gfx_activity=5,
            edge=None,
            hotspot=41,
            power={"current_socket_power": 180, "average_socket_power": 0xFFFF, "power_limit": 750},
            throttle_status="N/A",
        ),
    ]


@pytest.fixture
def fake_amdsmi(monkeypatch: pytest.MonkeyPatch) -> FakeAmdSmi:
    state = FakeAmdSmi(two_amd_gpus())
    monkeypatch.setitem(sys.modules, "amdsmi", state.module())
    return state


def test_amdsmi_inventory(fake_amdsmi: FakeAmdSmi) -> None:
    provider = AmdSmiProvider()
    assert fake_amdsmi.init_flags == [2]  # INIT_AMD_GPUS only
    assert provider.gpus() == [
        GpuInfo(0, "a1ff7590-0000-1000-80e6-1d1f2c0d", "AMD Radeon RX 9060 XT", "amd", 16 * GIB),
        GpuInfo(1, "b2ff74a1-0000-1000-80e6-2e2f3d1e", "AMD Instinct MI300X", "amd", 192 * GIB),
    ]


def test_amdsmi_sample_converts_units_and_picks_the_reported_power(
    fake_amdsmi: FakeAmdSmi,
) -> None:
    assert AmdSmiProvider().sample() == [
        GpuSample(0, 87.0, 4096 * MIB, 16 * GIB, 64.0, 142.0, 160.0, throttled=True),
        # No edge sensor: the hotspot temperature; "N/A" throttle status: not throttled.
        GpuSample(1, 5.0, 0, 192 * GIB, 41.0, 180.0, 750.0, throttled=False),
    ]


@pytest.mark.parametrize(
    ("power", "watts", "limit_watts"),
    [
        # Releases mark a missing metric with "N/A" or with the raw uint16 marker.
        (
            {"current_socket_power": 0xFFFF, "average_socket_power": 142, "power_limit": 160},
            142,
            160,
        ),
        ({"current_socket_power": 0, "average_socket_power": 142, "power_limit": 160}, 142, 160),
        ({"current_socket_power": 97, "average_socket_power": 142, "power_limit": "N/A"}, 97, 0),
        (
            {"current_socket_power": "N/A", "average_socket_power": "N/A", "power_limit": 0xFFFF},
            0,
            0,
        ),
        ({}, 0, 0),
    ],
)
def test_amdsmi_power_spellings_across_releases(
    fake_amdsmi: FakeAmdSmi, power: dict[str, Any], watts: float, limit_watts: float
) -> None:
    fake_amdsmi.gpus[0].power = power
    sample = AmdSmiProvider().sample()[0]
    assert (sample.power_watts, sample.power_limit_watts) == (watts, limit_watts)
    assert sample.utilization_percent == 87.0  # the rest of the reading is unaffected


def test_amdsmi_temperature_in_millidegrees_is_converted(fake_amdsmi: FakeAmdSmi) -> None:
    fake_amdsmi.gpus[0].edge = 64_000
    assert AmdSmiProvider().sample()[0].temperature_celsius == 64.0


def test_amdsmi_one_failing_query_zeroes_that_field_only(fake_amdsmi: FakeAmdSmi) -> None:
    provider = AmdSmiProvider()
    fake_amdsmi.failing = {("temperature", 0)}
    fake_amdsmi.gpus[1].gfx_activity = "N/A"
    first, second = provider.sample()
    assert first == GpuSample(0, 87.0, 4096 * MIB, 16 * GIB, 0.0, 142.0, 160.0, throttled=True)
    assert second == GpuSample(1, 0.0, 0, 192 * GIB, 41.0, 180.0, 750.0, throttled=False)


def test_amdsmi_failing_power_query_zeroes_power_and_limit(fake_amdsmi: FakeAmdSmi) -> None:
    provider = AmdSmiProvider()
    fake_amdsmi.failing = {("power", 1)}
    sample = provider.sample()[1]
    assert (sample.power_watts, sample.power_limit_watts) == (0.0, 0.0)
    assert sample.temperature_celsius == 41.0


def test_amdsmi_close_shuts_down_once(fake_amdsmi: FakeAmdSmi) -> None:
    provider = AmdSmiProvider()
    provider.close()
    provider.close()
    assert fake_amdsmi.shutdowns == 1


def test_amdsmi_binding_without_rocm_library_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The real binding prints the loader error and then fails with a KeyError
    # from its library table when libamd_smi.so is missing.
    package = tmp_path / "amdsmi"
    package.mkdir()
    (package / "__init__.py").write_text("raise KeyError('libamd_smi.so')\n")
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ProviderUnavailable, match="could not load libamd_smi"):
        AmdSmiProvider()


def test_auto_prefers_nvml_then_amdsmi(
    fake_nvml: FakeNvml, fake_amdsmi: FakeAmdSmi, log: logging.Logger
) -> None:
    assert open_provider("auto", logger=log).name == "nvml"
    # NVML loads but sees no GPU (an AMD host with a stray NVIDIA driver): AMD SMI next.
    fake_nvml.gpus = []
    provider = open_provider("auto", logger=log)
    assert provider.name == "amdsmi"
    assert [g.name for g in provider.gpus()] == ["AMD Radeon RX 9060 XT", "AMD Instinct MI300X"]
    assert fake_nvml.shutdowns == 1  # the empty NVML was released


# --- simulated ------------------------------------------------------------------------


def spec(name: str) -> GpuSpec:
    kind = GPU_CATALOG[name]
    return GpuSpec(kind.name, kind.vendor, kind.memory_bytes)


class Load:
    """The activity callback: what the emulated Ollama would report, set by the test."""

    def __init__(self) -> None:
        self.now: list[GpuActivity] = []

    def __call__(self) -> list[GpuActivity]:
        return self.now

    def set(self, util: float, memory: int = 0, index: int = 0) -> None:
        self.now = [GpuActivity(index, util, memory)]


def run(provider: TelemetryProvider, samples: int) -> list[GpuSample]:
    """The last reading of GPU 0 after each of ``samples`` samples."""
    return [provider.sample()[0] for _ in range(samples)]


def test_simulated_inventory_comes_from_the_specs() -> None:
    provider = SimulatedProvider(
        [spec("NVIDIA GeForce RTX 4090"), GpuSpec("Radeon", "AMD", 12 * GIB)], seed=1
    )
    gpus = provider.gpus()
    assert [(g.index, g.name, g.vendor, g.memory_total_bytes) for g in gpus] == [
        (0, "NVIDIA GeForce RTX 4090", "nvidia", 24 * GIB),
        (1, "Radeon", "amd", 12 * GIB),
    ]
    assert len({g.uuid for g in gpus}) == 2


def test_simulated_idle_gpu_stays_cool_and_draws_little() -> None:
    load = Load()
    load.set(0.0)
    tdp = GPU_CATALOG["NVIDIA GeForce RTX 4090"].tdp_watts
    provider = SimulatedProvider([spec("NVIDIA GeForce RTX 4090")], load, seed=3)
    for s in run(provider, 30):
        assert abs(s.temperature_celsius - IDLE_CELSIUS) < 2.0
        assert 0.10 * tdp < s.power_watts < 0.20 * tdp
        assert s.power_limit_watts == tdp
        assert s.utilization_percent == 0.0
        assert not s.throttled


def test_simulated_sustained_load_heats_with_a_lag_and_draws_more() -> None:
    load = Load()
    provider = SimulatedProvider([spec("NVIDIA GeForce RTX 4090")], load, seed=3)
    load.set(0.0)
    idle = run(provider, 10)[-1]
    load.set(100.0)
    busy = run(provider, 40)
    # Power follows the load at once; temperature climbs over several samples.
    assert busy[0].power_watts > 0.85 * busy[0].power_limit_watts > 2 * idle.power_watts
    assert busy[0].temperature_celsius < idle.temperature_celsius + 15
    assert busy[-1].temperature_celsius > 70.0
    assert busy[-1].utilization_percent == 100.0
    load.set(0.0)
    cooling = run(provider, 40)
    assert cooling[0].temperature_celsius > 60.0  # still hot right after the burst
    assert cooling[-1].temperature_celsius < IDLE_CELSIUS + 2


def test_simulated_memory_used_comes_from_activity_and_is_capped() -> None:
    load = Load()
    provider = SimulatedProvider([spec("NVIDIA Tesla P4")], load)
    load.set(40.0, memory=5 * GIB)
    assert provider.sample()[0].memory_used_bytes == 5 * GIB
    load.set(40.0, memory=50 * GIB)
    assert provider.sample()[0].memory_used_bytes == 8 * GIB
    load.now = []  # the GPU no longer appears in the activity: idle, empty
    assert provider.sample()[0].memory_used_bytes == 0


def test_simulated_is_deterministic_for_a_seed() -> None:
    def readings(seed: int) -> list[list[GpuSample]]:
        load = Load()
        provider = SimulatedProvider(
            [spec("NVIDIA GeForce RTX 3070"), spec("AMD Radeon RX 6600")], load, seed=seed
        )
        out = []
        for step in range(20):
            load.set(100.0 if step % 7 < 4 else 10.0, memory=step * GIB // 4)
            out.append(provider.sample())
        return out

    assert readings(7) == readings(7)
    assert readings(7) != readings(8)


def test_simulated_throttles_exactly_above_the_threshold_and_some_hot_cards_do() -> None:
    throttled_seen = 0
    for seed in range(20):
        load = Load()
        load.set(100.0)
        for s in run(SimulatedProvider([spec("NVIDIA GeForce GTX 1080")], load, seed=seed), 40):
            assert s.throttled is (s.temperature_celsius > THROTTLE_CELSIUS)
            throttled_seen += s.throttled
    assert throttled_seen > 0


def test_simulated_unknown_gpu_gets_a_default_power_budget() -> None:
    provider = SimulatedProvider([GpuSpec("Mystery GPU", "other", 4 * GIB)])
    [sample] = provider.sample()
    assert sample.power_limit_watts == 150.0
    assert provider.gpus()[0].vendor == "other"


def test_open_provider_simulated_uses_the_specs_and_activity(log: logging.Logger) -> None:
    load = Load()
    load.set(55.0, memory=GIB)
    provider = open_provider(
        "simulated", simulated_gpus=[spec("NVIDIA Tesla P4")], activity=load, seed=2, logger=log
    )
    assert provider.name == "simulated"
    [s] = provider.sample()
    assert (s.utilization_percent, s.memory_used_bytes) == (55.0, GIB)


# --- none -----------------------------------------------------------------------------


def test_none_provider_reports_nothing(
    log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    provider = open_provider("none", logger=log)
    assert isinstance(provider, NoneProvider)
    assert provider.gpus() == [] and provider.sample() == []
    provider.close()
    provider.close()
    [line] = records(caplog)
    assert line.getMessage() == "telemetry: disabled (provider none)"
