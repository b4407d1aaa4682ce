"""systemd's notify protocol for archived: READY=1, WATCHDOG=1 and STOPPING=1 over $NOTIFY_SOCKET.

hsmfs has its own copy (hsmfs.notify): the two daemons share no code, only the mount.
Outside systemd (no $NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

LOG = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to the service manager; send failures are logged, never raised."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        # An address starting with "@" is in the abstract namespace (a leading NUL byte).
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        self.watchdog_usec = watchdog_usec
        self._failed = False

    @classmethod
    def from_environment(cls) -> Notifier:
        """The notifier systemd asked for, or a silent one outside systemd."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        # A child that inherited the variables must not ping on its parent's behalf.
        mine = not pid or pid == str(os.getpid())
        watchdog = int(usec) if usec.isdigit() and int(usec) > 0 and mine else None
        return cls(os.environ.get("NOTIFY_SOCKET") or None, watchdog)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        if self.watchdog_usec is None or self.address is None:
            return None
        return self.watchdog_usec / 2e6

    def send(self, *fields: str) -> bool:
        """Send one datagram of NAME=value lines; True if the manager got it."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            if not self._failed:  # once: a vanished manager would otherwise flood the log
                LOG.warning("cannot notify the service manager at %s: %s", self.address, exc)
                self._failed = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")
