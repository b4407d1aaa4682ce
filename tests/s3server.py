"""A real S3 endpoint for tests: moto's ThreadedMotoServer on 127.0.0.1, instrumented.

- counts requests by method, path and Range header (`requests`, `count`);
- `stop()` simulates an outage: the listening socket is closed and every open
  connection is cut, so clients see "connection refused"; `start()` brings it back on
  the same port with the same buckets and objects (moto keeps them in this process);
- `stall()` accepts requests but answers none until `resume()` (a hung endpoint);
- `hold_bodies(after=N)` sends the first N bytes of each response body, then holds the
  rest until `resume()` or `stop()`, so a test can cut transfers in the middle.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

STALL_LIMIT = 120.0  # seconds a stalled request waits before it is answered anyway

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log on stderr


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    query: str
    range: str | None  # the Range header, if any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class S3Server(ThreadedMotoServer):
    """moto's threaded server with request counting, outages and stalls."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__("127.0.0.1", port or free_port(), verbose=False)
        self.port = self._port
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log: list[Request] = []
        self._log_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._running = False
        self._serving = threading.Event()
        self._serving.set()
        self._hold_after: int | None = None

    # --- life cycle ---------------------------------------------------------------------

    def _server_entry(self) -> None:
        server_ref = self
        app = _RecordingApp(DomainDispatcherApplication(create_backend_app), self)

        class TrackedHandler(MotoRequestHandler):
            def setup(self) -> None:
                super().setup()
                server_ref._connections.add(self.connection)
                if not server_ref._running:  # accepted while stopping: part of the outage
                    server_ref._cut(self.connection)

            def finish(self) -> None:
                server_ref._connections.discard(self.connection)
                super().finish()

        self._server = make_server(
            "127.0.0.1", self.port, app, threaded=True, request_handler=TrackedHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        if not self._running:
            super().start()
            self._running = True

    def stop(self) -> None:
        """An outage: refuse new connections and cut the open ones."""
        if not self._running:
            return
        self._running = False
        for conn in list(self._connections):  # cut transfers now, not after shutdown
            self._cut(conn)
        self._hold_after = None
        self._serving.set()  # release held requests (into cut connections) so they end
        super().stop()
        if self._server is not None:
            self._server.server_close()

    @staticmethod
    def _cut(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    def stall(self) -> None:
        """Accept requests but answer none (until resume() or STALL_LIMIT)."""
        self._serving.clear()

    def resume(self) -> None:
        self._hold_after = None
        self._serving.set()

    def hold_bodies(self, after: int) -> None:
        """Send `after` bytes of every response body, the rest only after resume()."""
        self._serving.clear()
        self._hold_after = after

    # --- request log --------------------------------------------------------------------

    def _record(self, request: Request) -> None:
        with self._log_lock:
            self._log.append(request)

    def requests(self, method: str | None = None) -> list[Request]:
        with self._log_lock:
            return [r for r in self._log if method is None or r.method == method]

    def count(self, method: str, *, ranged: bool | None = None, path: str | None = None) -> int:
        """Requests with `method`; `ranged` True/False: with/without a Range header."""
        return sum(
            1
            for r in self.requests(method)
            if (ranged is None or (r.range is not None) == ranged)
            and (path is None or r.path == path)
        )

    def clear(self) -> None:
        with self._log_lock:
            self._log.clear()


class _RecordingApp:
    """WSGI middleware: log each request, then hold it while the server is stalled."""

    def __init__(self, app: Callable[..., Iterable[bytes]], server: S3Server) -> None:
        self._app = app
        self._server = server

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.get("PATH_INFO", "").startswith("/moto-api"):
            self._server._record(
                Request(
                    method=environ["REQUEST_METHOD"],
                    path=environ.get("PATH_INFO", ""),
                    query=environ.get("QUERY_STRING", ""),
                    range=environ.get("HTTP_RANGE"),
                )
            )
        hold_after = self._server._hold_after
        if hold_after is None:
            self._server._serving.wait(STALL_LIMIT)
            return self._app(environ, start_response)
        return self._held(self._app(environ, start_response), hold_after)

    def _held(self, body: Iterable[bytes], after: int) -> Iterator[bytes]:
        sent = 0
        for chunk in body:
            if sent < after <= sent + len(chunk):
                yield chunk[: after - sent]
                self._server._serving.wait(STALL_LIMIT)
                chunk = chunk[after - sent :]
            sent += len(chunk)
            yield chunk
