"""Federation: one Hive cluster used as a node of another.

A node agent's endpoint may be another Hive cluster's gateway instead of an Ollama server
(the gateway speaks Ollama's API). Two things keep a request from going round in circles
when clusters use each other that way:

- every request carries the clusters it has passed through (``via``): the gateway reads
  them from the ``X-Hive-Via`` header, the coordinator adds its own cluster's name, and
  the agent sends the list on to its endpoint in the same header;
- a gateway's ``/api/version`` names its cluster (``hive_cluster``), so the agent tells the
  coordinator which endpoint leads where and the router never places a request on an
  endpoint that leads to a cluster in its ``via``.
"""

from __future__ import annotations

from collections.abc import Sequence

# The HTTP header that carries a request's route between clusters, outermost first.
VIA_HEADER = "X-Hive-Via"
# The key in a Hive gateway's /api/version answer that names its cluster.
VERSION_KEY = "hive_cluster"


def via_headers(via: Sequence[str]) -> dict[str, str]:
    """The headers that carry ``via`` to an endpoint; none for a request from no cluster."""
    return {VIA_HEADER: ", ".join(via)} if via else {}


def parse_via(value: str | None) -> list[str]:
    """The cluster names in an ``X-Hive-Via`` header value (the coordinator checks them)."""
    return [name.strip() for name in (value or "").split(",") if name.strip()]
