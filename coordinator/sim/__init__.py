"""Discrete-event simulator running the production router and scheduler (``hive sim``).

simulate(cluster, workload, policy, seed=None, router=None, optimizer=None,
         mismatch=0.0, saturation=None) -> SimResult
capacity(cluster, workload) -> tasks/s (the fluid model)
saturation.measure(cluster, workload, seed, mismatch) -> Saturation (measured, cached)
load_workload(path) -> Workload
cli.main(argv) -> exit status
"""

from coordinator.sim.engine import Saturation, SimResult, Simulation, capacity, simulate
from coordinator.sim.policies import POLICY_NAMES, make_policy
from coordinator.sim.workload import Workload, load_workload, parse_workload

__all__ = [
    "POLICY_NAMES",
    "Saturation",
    "SimResult",
    "Simulation",
    "Workload",
    "capacity",
    "load_workload",
    "make_policy",
    "parse_workload",
    "simulate",
]
