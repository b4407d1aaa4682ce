"""The sd_notify helpers of both packages against a real datagram socket."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pytest
import trio

import archived.sdnotify
import hsmfs.notify
from tests.systemd.sdnotify import NotifyListener

NOTIFIERS = [hsmfs.notify.Notifier, archived.sdnotify.Notifier]


@pytest.mark.parametrize("notifier_class", NOTIFIERS)
def test_lines_arrive_in_one_datagram(notifier_class, tmp_path: Path) -> None:
    listener = NotifyListener(tmp_path / "n.sock")
    try:
        notifier = notifier_class(str(listener.path))
        assert notifier.ready("serving /srv/nearline")
        data = listener.sock.recv(4096)
        assert data == b"READY=1\nSTATUS=serving /srv/nearline"
    finally:
        listener.close()


@pytest.mark.parametrize("notifier_class", NOTIFIERS)
def test_abstract_socket_address(notifier_class) -> None:
    name = f"hsmfs-test-{os.getpid()}-{notifier_class.__module__}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert notifier_class(f"@{name}").stopping()
        assert sock.recv(4096) == b"STOPPING=1"


@pytest.mark.parametrize("notifier_class", NOTIFIERS)
def test_environment(notifier_class, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    silent = notifier_class.from_environment()
    assert not silent.ready() and silent.watchdog_interval is None  # not under systemd

    monkeypatch.setenv("NOTIFY_SOCKET", "/run/notify-test")
    assert notifier_class.from_environment().watchdog_interval == 5.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notifier_class.from_environment().watchdog_interval == 5.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert notifier_class.from_environment().watchdog_interval is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert notifier_class.from_environment().watchdog_interval is None


@pytest.mark.parametrize("notifier_class", NOTIFIERS)
def test_a_vanished_manager_is_logged_once_and_never_raises(
    notifier_class, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = notifier_class(str(tmp_path / "gone.sock"))
    with caplog.at_level(logging.WARNING):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
    warnings = [r for r in caplog.records if "cannot notify" in r.getMessage()]
    assert len(warnings) == 1 and "gone.sock" in warnings[0].getMessage()


def test_watchdog_pings_stop_while_the_trio_loop_hangs(tmp_path: Path) -> None:
    """The point of pinging from the loop: a blocked loop stops the pings."""
    listener = NotifyListener(tmp_path / "n.sock")
    notifier = hsmfs.notify.Notifier(str(listener.path), watchdog_usec=100_000)  # every 0.05 s
    arrivals: list[float] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(notifier.ping_watchdog)
            await trio.sleep(0.3)
            time.sleep(1.0)  # the loop hangs
            await trio.sleep(0.3)
            nursery.cancel_scope.cancel()

    try:
        started = time.monotonic()
        trio.run(main)
        listener.sock.setblocking(False)
        while True:
            try:
                assert listener.sock.recv(4096) == b"WATCHDOG=1"
            except BlockingIOError:
                break
            arrivals.append(time.monotonic())
    finally:
        listener.close()
    # About 0.6 s of pinging at 0.05 s intervals (~14 pings); pinging through the hang
    # too would have sent ~32. Sleeping may stretch intervals, never shrink them.
    assert time.monotonic() - started >= 1.6
    assert 4 <= len(arrivals) <= 20, len(arrivals)
