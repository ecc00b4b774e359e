"""Which store a coordinator opens: ``create_store`` picks the SQLite file
(``store.WorkflowStore``) or PostgreSQL (``store_pg.PostgresStore``) from its settings.
Apart from both, so that neither store module imports the other's (the PostgreSQL one
builds on the SQLite one's rows and group commit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from coordinator.workflows.store import Fenced, StateStore, WorkflowStore

if TYPE_CHECKING:
    from hive.config import CoordinatorSettings


def create_store(
    settings: CoordinatorSettings,
    *,
    fence: Callable[[], int] | None = None,
    on_fenced: Callable[[Fenced], None] | None = None,
    session_options: str = "",
) -> StateStore:
    """The store the settings name: PostgreSQL for a ``postgresql://`` store, else the
    SQLite file (``store``'s path, or ``state_path``). ``fence`` and ``on_fenced`` only
    apply to PostgreSQL (one SQLite coordinator has no leader to fence)."""
    if settings.postgres_url:
        from coordinator.workflows.store_pg import PostgresStore

        return PostgresStore(
            settings.postgres_url,
            fence=fence,
            on_fenced=on_fenced,
            session_options=session_options,
        )
    return WorkflowStore(settings.sqlite_path or settings.state_path)
