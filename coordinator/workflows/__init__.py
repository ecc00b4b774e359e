"""Development workflows: pipeline templates, the engine that runs them, durable state.

``templates`` parses pipeline YAML into stage DAGs, ``engine`` runs workflows through the
dispatcher, ``store`` keeps them (SQLite, or PostgreSQL in ``store_pg``), ``artifacts``
turns outputs into files and ``servicer`` is the gRPC face (WorkflowService).
"""

from coordinator.workflows.engine import WorkflowEngine
from coordinator.workflows.store import WorkflowStore
from coordinator.workflows.templates import PipelineCatalog

__all__ = ["PipelineCatalog", "WorkflowEngine", "WorkflowStore"]
