"""Hive mesh: shared code of the coordinator, node agent and gateway.

``hive.v1`` holds the generated gRPC stubs of the contract in ``protos/``.
"""

__version__ = "0.1.0"
