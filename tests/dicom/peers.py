"""Real DICOM peers for the tests: DCMTK command-line tools and a DCMTK storescp."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

TOOL_TIMEOUT = 120


def dcmtk_env() -> dict[str, str]:
    # DCMTK 3.6.7 leaves Nagle on unless told; loopback transfers crawl without this.
    return {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen | None = None, bound: float = 30) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"peer on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {bound} s")


def dcmtk(
    tool: str, *args: str | os.PathLike[str], check: bool = True
) -> subprocess.CompletedProcess:
    """Run a DCMTK tool to completion; output captured for the assertion messages."""
    result = subprocess.run(
        [tool, *map(str, args)], env=dcmtk_env(), capture_output=True, text=True,
        timeout=TOOL_TIMEOUT, check=False,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(
            f"{tool} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


class StoreSCP:
    """DCMTK storescp writing received instances bit-preserving into a directory."""

    def __init__(self, directory: Path, ae_title: str = "DEST", port: int | None = None,
                 extra: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.directory = directory
        self.ae_title = ae_title
        self.port = port or free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["storescp", "-aet", ae_title, "--bit-preserving", "-od", str(directory), *extra,
             str(self.port)],
            env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_listening(self.port, self.process)

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
