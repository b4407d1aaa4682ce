"""Checks at the door: `archivectl fs add` and `ae add` refuse what would fail later, in one
line that names the path, AE, host or port and says what to do; nothing is stored then.

Real parts: a read-only tmpfs for a directory nobody may write, real hsmfs mounts
(live, and killed with -9) for `tar:` paths."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from archived.ctl import main
from tests.mounts import HsmMount


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def refused(capsys: pytest.CaptureFixture[str], uri: str, *argv: str) -> str:
    """The one-line message of a refused command; nothing was stored."""
    code, out, err = run(capsys, "--config", uri, *argv)
    assert (code, out) == (65, None), err
    assert err.startswith("archivectl: ") and err.count("\n") == 1
    listed = run(capsys, "--config", uri, argv[0], "list")[1]
    assert listed in ([], None), listed
    return err.removeprefix("archivectl: ").rstrip("\n")


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"lmdb://{tmp_path}/conf"


# ---------------------------------------------------------------------------- ae add


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["CT_ROOM_ONE_SCANNER", "10.0.0.8", "104"],
         "AE title 'CT_ROOM_ONE_SCANNER' has 19 characters; DICOM allows at most 16, "
         "e.g. 'CT_ROOM_ONE_SCAN'"),
        (["CT\\1", "10.0.0.8", "104"],
         "AE title 'CT\\\\1' contains '\\\\'; backslashes and control characters are not allowed"),
        (["CT\x071", "10.0.0.8", "104"], "AE title 'CT\\x071' contains '\\x07'"),
        (["  ", "10.0.0.8", "104"], "empty AE title; give 1-16 characters, e.g. MODALITY1"),
        (["CT1", "ct 1.hospital", "104"],
         "host 'ct 1.hospital' is neither an IP address nor a DNS name"),
        (["CT1", "ct1..example", "104"], "host 'ct1..example' is neither an IP address"),
        (["CT1", "ct1-.example", "104"], "host 'ct1-.example' is neither an IP address"),
        (["CT1", "10.0.0.8", "0"], "port 0 of AE 'CT1': use 1-65535 (DICOM: 104, 11112)"),
        (["CT1", "10.0.0.8", "65536"], "port 65536 of AE 'CT1': use 1-65535"),
        (["CT1", "10.0.0.8", "104", "--allow-host", "10.0.0.8/24"],
         "host '10.0.0.8/24' is neither an IP address nor a DNS name"),
    ],
)  # fmt: skip
def test_ae_add_refuses_a_bad_title_host_or_port(
    capsys: pytest.CaptureFixture[str], uri: str, args: list[str], message: str
) -> None:
    assert refused(capsys, uri, "ae", "add", *args).startswith(message)


@pytest.mark.parametrize(
    ("aet", "host"),
    [("CT1", "10.0.0.8"), ("MODALITY_ROOM_16", "ct1.hospital.example"), ("US 2", "::1"),
     ("PACS", "localhost")],
)  # fmt: skip
def test_ae_add_accepts_what_dicom_allows(
    capsys: pytest.CaptureFixture[str], uri: str, aet: str, host: str
) -> None:
    code, _, err = run(capsys, "--config", uri, "ae", "add", aet, host, "11112")
    assert code == 0, err
    listed = run(capsys, "--config", uri, "ae", "list")[1]
    assert isinstance(listed, list)
    assert [(a["aet"], a["host"], a["port"]) for a in listed] == [(aet, host, 11112)]


# ---------------------------------------------------------------------------- fs add


def test_fs_add_refuses_a_missing_directory_unless_told_to_create_it(
    capsys: pytest.CaptureFixture[str], uri: str, tmp_path: Path
) -> None:
    online = tmp_path / "data" / "online"
    message = refused(capsys, uri, "fs", "add", "--group", "ONLINE_STORAGE", str(online))
    assert message == f"{online}: no such directory; create it (mkdir -p {online}) or pass --create"
    assert not online.exists()
    code, added, err = run(capsys, "--config", uri, "fs", "add", "--create", "--group",
                           "ONLINE_STORAGE", str(online))  # fmt: skip
    assert code == 0, err
    assert online.is_dir() and added["path"] == str(online)  # type: ignore[index]


def test_fs_add_refuses_a_relative_path_and_a_file(
    capsys: pytest.CaptureFixture[str], uri: str, tmp_path: Path
) -> None:
    message = refused(capsys, uri, "fs", "add", "--group", "ONLINE_STORAGE", "data/online")
    assert message == "data/online: not an absolute path; write it from the root, /..."
    plain = tmp_path / "plain-file"
    plain.write_text("")
    message = refused(capsys, uri, "fs", "add", "--group", "ONLINE_STORAGE", str(plain))
    assert message == f"{plain}: not a directory; give the directory to store into"


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs mounted in the test's directory: even root cannot write there."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)],
                   check=True)  # fmt: skip
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_fs_add_refuses_a_directory_it_cannot_write(
    capsys: pytest.CaptureFixture[str], uri: str, read_only: Path
) -> None:
    message = refused(capsys, uri, "fs", "add", "--group", "ONLINE_STORAGE", str(read_only))
    assert message.startswith(f"{read_only}: not writable by ")
    assert "fix its owner or mode, or its mount if it is read-only" in message


# ---------------------------------------------------------------------------- tar: paths


def test_a_tar_path_on_a_plain_directory_is_not_an_hsmfs_mount(
    capsys: pytest.CaptureFixture[str], uri: str, tmp_path: Path
) -> None:
    mount_point = tmp_path / "nearline"  # what an unmounted hsmfs leaves: an empty directory
    mount_point.mkdir()
    message = refused(capsys, uri, "fs", "add", "--group", "NEARLINE_STORAGE",
                      f"tar:{mount_point}")  # fmt: skip
    assert message.startswith(
        f"tar:{mount_point}: {mount_point} is not on a live hsmfs mount: nothing is mounted "
        "there, it is a plain directory on /"
    )
    assert message.endswith(
        f"without user.hsm.* attributes; mount hsmfs on it (hsmfs mount {mount_point} "
        "--cache DIR --state DIR)"
    )


def test_a_tar_path_on_another_file_system_is_not_an_hsmfs_mount(
    capsys: pytest.CaptureFixture[str], uri: str, read_only: Path
) -> None:
    message = refused(capsys, uri, "fs", "add", "--group", "NEARLINE_STORAGE", f"tar:{read_only}")
    assert f"{read_only} is a mount of another file system, without user.hsm.*" in message


@pytest.mark.fuse
def test_a_tar_path_on_a_live_hsmfs_mount_is_accepted(
    capsys: pytest.CaptureFixture[str], uri: str, tmp_path: Path
) -> None:
    mount = HsmMount(tmp_path / "hsm").start()
    try:
        code, added, err = run(capsys, "--config", uri, "fs", "add", "--group",
                               "NEARLINE_STORAGE", f"tar:{mount.mnt}")  # fmt: skip
        assert code == 0 and added["path"] == f"tar:{mount.mnt}", err  # type: ignore[index]
        below = mount.mnt / "site-b" / "tars"
        code, _, err = run(capsys, "--config", uri, "fs", "add", "--group", "NEARLINE_STORAGE",
                           f"tar:{below}")  # fmt: skip
        assert code == 65 and not below.exists()
        assert f"tar:{below}: no such directory on the hsmfs mount; create it" in err
        code, _, err = run(capsys, "--config", uri, "fs", "add", "--create", "--group",
                           "NEARLINE_STORAGE", f"tar:{below}")  # fmt: skip
        assert code == 0 and below.is_dir(), err
    finally:
        mount.cleanup()


@pytest.mark.fuse
def test_a_tar_path_whose_hsmfs_daemon_died_is_refused(
    capsys: pytest.CaptureFixture[str], uri: str, tmp_path: Path
) -> None:
    mount = HsmMount(tmp_path / "hsm").start()
    try:
        mount.kill()  # kill -9: the mount stays, nobody answers it (ENOTCONN)
        message = refused(capsys, uri, "fs", "add", "--group", "NEARLINE_STORAGE",
                          f"tar:{mount.mnt}")  # fmt: skip
        assert message.startswith(f"tar:{mount.mnt}: {mount.mnt} is not on a live hsmfs mount: ")
        assert "(its daemon is gone); unmount it (fusermount3 -u " in message
        assert message.endswith("and mount hsmfs again")
    finally:
        mount.cleanup()
