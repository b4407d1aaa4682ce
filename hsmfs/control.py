"""The control socket behind hsmctl: one JSON request per line, one JSON answer per line.

A request is ``{"cmd": NAME, ...arguments}``; the answer is ``{"ok": true, ...}`` or
``{"ok": false, "error": MESSAGE}``. Commands that take long may send any number of
``{"progress": ...}`` lines before the answer.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from .errors import HsmfsError, NotMounted

log = logging.getLogger(__name__)

Reply = dict[str, Any]
Command = Callable[[dict[str, Any]], Awaitable[Reply] | AsyncIterator[Reply]]
MAX_REQUEST = 1 << 20


class ControlServer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.commands: dict[str, Command] = {}

    def command(self, name: str, func: Command) -> None:
        self.commands[name] = func

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(str(self.path))
        os.chmod(self.path, 0o600)  # root's tool: actions can release and delete data
        sock.listen(16)
        listener = trio.SocketListener(sock)
        task_status.started()
        try:
            await trio.serve_listeners(self._handle, [listener])
        finally:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            buffer = b""
            while b"\n" not in buffer and len(buffer) < MAX_REQUEST:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
            try:
                request = json.loads(buffer.split(b"\n", 1)[0])
                func = self.commands[request["cmd"]]
            except (ValueError, KeyError, TypeError):
                await _send(stream, {"ok": False, "error": f"unknown request {buffer[:200]!r}"})
                return
            try:
                result = func(request)
                if hasattr(result, "__aiter__"):
                    async for reply in result:
                        await _send(stream, reply)
                else:
                    await _send(stream, await result)
            except HsmfsError as exc:
                await _send(stream, {"ok": False, "error": str(exc)})
            except trio.BrokenResourceError:
                pass  # the client went away
            except Exception as exc:
                log.exception("control command %r failed", request.get("cmd"))
                await _send(stream, {"ok": False, "error": f"internal error: {exc}"})


async def _send(stream: trio.SocketStream, reply: Reply) -> None:
    try:
        await stream.send_all(json.dumps(reply).encode() + b"\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def request(socket_path: str, message: dict[str, Any], timeout: float = 30.0) -> Iterator[Reply]:
    """Send one request from a plain (non-trio) client; yields every reply line."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        sock.close()
        raise NotMounted(
            f"cannot reach the hsmfs daemon at {socket_path}: {exc.strerror}; is it running?"
        ) from None
    with sock, sock.makefile("rb") as reader:
        sock.sendall(json.dumps(message).encode() + b"\n")
        for line in reader:
            yield json.loads(line)
