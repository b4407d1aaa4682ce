"""The quick start: hsmfs on its embedded default object store plus archived, one command.

    python -m archived.quickstart [--root /srv/hsm-quickstart] [--port 11112]

Mounts hsmfs at ROOT/nearline (the object store is the directory ROOT/hsmfs-state/
objects), registers ROOT/online as ONLINE_STORAGE and the mount as NEARLINE_STORAGE
(``tar:``), lets any calling AE in (a demonstration, not a hospital set-up: use
``archivectl ae add`` and switch AcceptUnknownCallingAETs off for real use), and runs
``archived serve`` in the foreground. Ctrl-C stops archived and unmounts hsmfs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from archived.conf import FileSystem, FileSystemGroup, open_store


def configure(conf_uri: str, online: Path, nearline: Path, port: int) -> None:
    """Idempotent: file systems and settings are added only where missing."""
    with open_store(conf_uri) as store:
        store.ensure_own_device()

        def edit() -> None:
            device = store.find_device(store.device_name)
            ext = device.archive
            assert ext is not None
            ext.accept_unknown_calling_aets = True
            for group_id, path in (("ONLINE_STORAGE", str(online)),
                                   ("NEARLINE_STORAGE", f"tar:{nearline}")):  # fmt: skip
                group = ext.group(group_id)
                if group is None:
                    group = FileSystemGroup(group_id=group_id)
                    ext.file_system_groups.append(group)
                if all(fs.path != path for fs in group.file_systems):
                    group.file_systems.append(FileSystem(path=path))
            _ae, connection = device.archive_ae()
            connection.port = port
            store.merge_device(device)

        store.batch(edit)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="archived.quickstart", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("/srv/hsm-quickstart"))
    parser.add_argument("--port", type=int, default=11112)
    args = parser.parse_args(argv)
    root: Path = args.root.absolute()
    nearline, online = root / "nearline", root / "online"
    for directory in (nearline, online, root / "hsmfs-cache", root / "hsmfs-state"):
        directory.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop as cleanly as on Ctrl-C
    if not os.path.ismount(nearline):
        subprocess.run(
            [str(bin_dir / "hsmfs"), "mount", str(nearline),
             "--cache", str(root / "hsmfs-cache"), "--state", str(root / "hsmfs-state")],
            check=True,
        )  # fmt: skip
    conf_uri = f"lmdb://{root}/archived-conf"
    configure(conf_uri, online, nearline, args.port)
    print(f"archived: AE ARCHIVED on port {args.port}; ONLINE {online}, NEARLINE tar:{nearline}")
    print(f"try: echoscu -aec ARCHIVED localhost {args.port}   |   hsmctl status {nearline}")
    try:
        return subprocess.run(
            [str(bin_dir / "archived"), "serve", "--config", conf_uri,
             "--index", str(root / "index.sqlite")],
        ).returncode  # fmt: skip
    except KeyboardInterrupt:
        return 0
    finally:
        subprocess.run([str(bin_dir / "hsmfs"), "umount", str(nearline)], check=False)


if __name__ == "__main__":
    sys.exit(main())
