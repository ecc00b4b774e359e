"""systemd's notify protocol in pure Python: READY, STATUS, WATCHDOG, STOPPING.

A ``Type=notify`` service tells systemd it is serving by sending ``READY=1`` in a
datagram to the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a path, or an abstract
name written with a leading ``@``); ``STATUS=`` lines show in ``systemctl status``. With
``WatchdogSec=`` set, systemd passes ``$WATCHDOG_USEC`` and kills and restarts a service
that does not send ``WATCHDOG=1`` within that time. The pings here come from a task on
the daemon's event loop, every half of ``$WATCHDOG_USEC``: a loop that hangs stops
pinging, which is exactly what the watchdog is for. No libsystemd needed.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so the daemons call it
unconditionally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping

log = logging.getLogger("hive.sdnotify")


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET``; does nothing when it is unset."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (honouring ``$WATCHDOG_PID``:
        a watchdog meant for another process, e.g. a wrapper shell, is not ours)."""
        env = os.environ if environ is None else environ
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if raw.isdigit() and (not pid or pid == str(os.getpid())):
            usec = int(raw)
        return cls(env.get("NOTIFY_SOCKET"), usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the watchdog timeout, as sd_watchdog_enabled(3)
        recommends, so one late ping does not get the service killed."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (``KEY=value``) as one datagram; False if not under systemd or
        the send failed (logged: a notify failure must never stop the daemon)."""
        if self.address is None:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]  # Linux abstract namespace
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop: a receiver that stopped reading (its queue
                # holds net.unix.max_dgram_qlen datagrams) costs a dropped message, not a
                # hung daemon.
                sock.setblocking(False)
                sock.connect(target)
                sock.send(payload)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def ping(self) -> bool:
        return self.notify("WATCHDOG=1")

    async def watchdog(self) -> None:
        """Ping every half watchdog interval, forever; returns at once without a watchdog."""
        interval = self.watchdog_interval
        if interval is None or not self.enabled:
            return
        while True:
            self.ping()
            await asyncio.sleep(interval)

    @contextlib.asynccontextmanager
    async def serving(self, status: str) -> AsyncIterator[Notifier]:
        """READY=1 with ``status`` and watchdog pings for the body; STOPPING=1 on the way out."""
        pinger = asyncio.create_task(self.watchdog(), name="sd-watchdog")
        self.ready(status)
        try:
            yield self
        finally:
            self.stopping("stopping")
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
