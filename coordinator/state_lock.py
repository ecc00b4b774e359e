"""One coordinator per state file: an exclusive lock on ``<state_path>.lock``.

The coordinator's state (SQLite) is not shared between processes, so two coordinators
on one state file would each believe they own every workflow: split brain. The daemon
takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<state_path>.lock`` before it opens
anything and holds it until it exits (the kernel drops it if the process dies, so a
crash never leaves a stale lock). A second coordinator (``docker service scale
hive-distributed_coordinator=3`` with the state on one volume, or a second systemd
instance) fails at start with ``StateLocked`` naming the holder, and stays down.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class StateLocked(RuntimeError):
    """Another coordinator holds the state file."""


class StateLock:
    def __init__(self, state_path: str | Path) -> None:
        self.path = Path(f"{state_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateLocked(
                f"state file {str(self.path)[:-5]} is in use by another coordinator "
                f"({holder}); only one coordinator may own a state file. Stop the other "
                "one, or give this one its own state_path (a separate cluster)."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
