"""Discrete-event simulator running the production router and scheduler (``hive sim``).

simulate(cluster, workload, policy, seed=None, router=None) -> SimResult
capacity(cluster, workload) -> tasks/s
load_workload(path) -> Workload
cli.main(argv) -> exit status
"""

from coordinator.sim.engine import SimResult, Simulation, capacity, simulate
from coordinator.sim.policies import POLICY_NAMES, make_policy
from coordinator.sim.workload import Workload, load_workload, parse_workload

__all__ = [
    "POLICY_NAMES",
    "SimResult",
    "Simulation",
    "Workload",
    "capacity",
    "load_workload",
    "make_policy",
    "parse_workload",
    "simulate",
]
