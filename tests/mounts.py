"""Real hsmfs mounts for tests: a daemon in a subprocess, mounted on a temporary directory."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MOUNT_TIMEOUT = 60.0


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 60.0,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """Wait until predicate() is truthy; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class HsmMount:
    """One hsmfs daemon in the foreground of a subprocess."""

    root: Path
    config_text: str = ""
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def mnt(self) -> Path:
        return self.root / "mnt"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    @property
    def config(self) -> Path:
        return self.root / "hsmfs.toml"

    def args(self) -> list[str]:
        args = ["--cache", str(self.cache), "--state", str(self.state)]
        if self.config_text:
            self.config.write_text(self.config_text)
            args += ["--config", str(self.config)]
        return args + self.extra_args

    def start(self) -> HsmMount:
        try:
            self.mnt.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # ENOTCONN: the stale mount a kill() left behind; the daemon's start-up clears it.
            if exc.errno != errno.ENOTCONN:
                raise
        read_fd, write_fd = os.pipe()
        cmd = [sys.executable, "-m", "hsmfs.cli", "mount", str(self.mnt), *self.args(),
               "--foreground", "--ready-fd", str(write_fd)]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, pass_fds=(write_fd,), stdout=log, stderr=log)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read().decode().strip()
        if message != "ready":
            self.proc.wait(timeout=MOUNT_TIMEOUT)
            raise RuntimeError(f"hsmfs did not mount: {message!r}\n{self.log.read_text()}")
        return self

    def stop(self, timeout: float = MOUNT_TIMEOUT) -> int:
        """SIGTERM (a clean unmount) and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        wait_for(lambda: not os.path.ismount(self.mnt), what=f"{self.mnt} to be unmounted")
        return code

    def kill(self) -> None:
        """kill -9: no flush, no unmount; the next start must recover."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=MOUNT_TIMEOUT)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=MOUNT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.statvfs(self.mnt)  # unlike stat, never answered from cached attributes
            mounted = os.path.ismount(self.mnt)
        except FileNotFoundError:
            mounted = False
        except OSError:
            mounted = True  # ENOTCONN: the daemon died and left its mount behind
        if mounted:
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
