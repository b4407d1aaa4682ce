"""The service manager's side of the notify protocol: a datagram socket tests listen on."""

from __future__ import annotations

import socket
import time
from pathlib import Path


class NotifyListener:
    """Binds NOTIFY_SOCKET and collects every NAME=value line the daemon sends, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.lines: list[str] = []

    def environment(self, watchdog_usec: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def wait_for(self, line: str, timeout: float = 60.0, count: int = 1) -> list[str]:
        """Receive until ``line`` has arrived ``count`` times; everything received so far."""
        deadline = time.monotonic() + timeout
        while self.lines.count(line) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {line!r} x{count}; "
                    f"received {self.lines}"
                )
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.lines.extend(data.decode().splitlines())
        return list(self.lines)

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
