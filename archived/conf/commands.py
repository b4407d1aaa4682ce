"""archivectl sub-commands of the configuration store: config, ae, fs.

Values equal to their defaults are not stored. `config get` of such a setting prints its
default, `config get --defaults` fills in every default below the node, and `config set`
prints the value now in effect (e.g. .../ArchiveDeviceExtension/IndexPath).

`fs add` refuses a directory that does not exist (unless --create) or that this user cannot
write, and a 'tar:' path that is not on a live hsmfs mount; `ae add` refuses an AE title
longer than 16 characters or with a backslash or control character, a host that is neither
an IP address nor a DNS name, and a port outside 1-65535. `config init` creates the
archive's own device if there is none and records IndexPath if it is unset; it never
changes what is set.

Every command prints JSON on stdout. Errors print one line on stderr and exit with the code of
their class: 70 configuration error, 71 store unavailable, 72 not found (also: no store, for
commands that only read), 73 integrity check failed, 74 optimistic lock conflict, 75
read-only configuration, 76 upgrade failed, 65 input refused at the door, 66 input file
unreadable.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

from archived.conf.doorchecks import check_ae, check_file_system_path, check_host
from archived.conf.errors import ConfigError, NotFoundError
from archived.conf.initdevice import init_archive_device
from archived.conf.model import (
    DEFAULT_DEVICE_NAME,
    AEPermissions,
    Availability,
    FileSystem,
    FileSystemGroup,
    FileSystemStatus,
    remote_ae_device,
)
from archived.conf.nodes import DEVICES_PATH, diff_paths, get_at, split_path
from archived.conf.store import ConfigStore, open_store

EX_NOINPUT = 66
Handler = Callable[[argparse.Namespace, ConfigStore], Any]


def _print(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise _InputError(f"cannot read {path}: {exc.strerror}; check the file name") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} line {exc.lineno}: {exc.msg}; fix the JSON") from None


class _InputError(ConfigError):
    """{detail}"""

    exit_code = EX_NOINPUT


def _command(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Open the store, run the handler, turn ConfigErrors into one line and an exit code."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            device_name = getattr(args, "device", None) or DEFAULT_DEVICE_NAME
            with open_store(args.config, device_name=device_name) as store:
                result = handler(args, store)
        except ConfigError as exc:
            print(f"archivectl: {exc}", file=sys.stderr)
            return exc.exit_code
        if result is not None:
            _print(result)
        return 0

    return run


# ---------------------------------------------------------------------------- config


def _export(args: argparse.Namespace, store: ConfigStore) -> Any:
    tree = store.get_node("/")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(tree, f, indent=2, ensure_ascii=False)
            f.write("\n")
        return None
    return tree


def _import(args: argparse.Namespace, store: ConfigStore) -> Any:
    store.persist_node("/", _read_json(args.file))
    return {"imported": args.file, "devices": store.list_device_names()}


def _effective(store: ConfigStore, path: str) -> Any:
    """The stored node, else the default of a setting that is not stored."""
    try:
        return store.get_node(path)
    except NotFoundError:
        return store.get_node(path, defaults=True)


def _get(args: argparse.Namespace, store: ConfigStore) -> Any:
    if args.defaults:
        return store.get_node(args.path, defaults=True)
    return _effective(store, args.path)


def _set(args: argparse.Namespace, store: ConfigStore) -> Any:
    try:
        value = json.loads(args.value)
    except json.JSONDecodeError:
        value = args.value  # a bare word is a string
    store.persist_node(args.path, value)
    return _effective(store, args.path)  # a value equal to its default is not stored


def _list(args: argparse.Namespace, store: ConfigStore) -> Any:
    node = store.get_node(args.path)
    if isinstance(node, dict):
        return sorted(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return node


def _diff(args: argparse.Namespace, store: ConfigStore) -> Any:
    """Paths where FILE differs from the store, with both values (secrets never shown)."""
    stored, other = store.get_node("/"), _read_json(args.file)
    out = []
    for path in sorted(diff_paths(stored, other)):
        parts = split_path(path)
        entry: dict[str, Any] = {"path": path}
        for label, tree in (("store", stored), ("file", other)):
            try:
                entry[label] = get_at(tree, parts)
            except ConfigError:
                entry[label] = None
        out.append(entry)
    return out


def _init(args: argparse.Namespace, store: ConfigStore) -> Any:
    return init_archive_device(store, args.index)


# ---------------------------------------------------------------------------- ae


def _ae_add(args: argparse.Namespace, store: ConfigStore) -> Any:
    check_ae(args.aet, args.host, args.port)
    for host in args.allow_host or []:
        check_host(host)
    permissions = AEPermissions(
        store=not args.no_store,
        query=not args.no_query,
        retrieve=not args.no_retrieve,
        allowed_hosts=args.allow_host or [],
    )
    device = remote_ae_device(args.aet, args.host, args.port, permissions)
    if args.aet in store.list_device_names():
        raise ConfigError(
            f"device {args.aet!r} already exists; remove it with `archivectl ae remove "
            f"{args.aet}` first"
        )
    store.merge_device(device)
    return store.get_node(store.find_ae_path(args.aet))


def _ae_list(args: argparse.Namespace, store: ConfigStore) -> Any:
    out = []
    for name in store.list_device_names():
        device = store.find_device(name)
        for ae in device.application_entities:
            conns = device.connections_of(ae)
            out.append(
                {
                    "aet": ae.ae_title,
                    "device": name,
                    "host": conns[0].hostname if conns else None,
                    "port": conns[0].port if conns else None,
                    "permissions": ae.permissions.model_dump(mode="json"),
                }
            )
    return out


def _ae_remove(args: argparse.Namespace, store: ConfigStore) -> Any:
    device = store.find_device_by_ae(args.aet)
    if device.name == store.device_name:
        raise ConfigError(f"AE {args.aet!r} is the archive's own; it cannot be removed here")
    store.remove_device(device.name)
    return {"removed": args.aet, "device": device.name}


# ---------------------------------------------------------------------------- fs


def _fs_row(group: FileSystemGroup, fs: FileSystem) -> dict[str, Any]:
    fields = fs.model_dump(mode="json", exclude={"uuid"}, by_alias=False)
    return {"uuid": fs.uuid, "group": group.group_id, **fields}


def _fs_add(args: argparse.Namespace, store: ConfigStore) -> Any:
    check_file_system_path(args.path, create=args.create)
    fs = FileSystem(path=args.path, status=args.status, availability=args.availability)

    def add() -> FileSystemGroup:
        store.ensure_own_device()
        device = store.find_device(store.device_name)
        ext = device.archive
        assert ext is not None
        group = ext.group(args.group)
        if group is None:
            group = FileSystemGroup(group_id=args.group)
            ext.file_system_groups.append(group)
        group.file_systems.append(fs)
        store.merge_device(device)
        return group

    return _fs_row(store.batch(add), fs)


def _fs_list(args: argparse.Namespace, store: ConfigStore) -> Any:
    ext = store.own_device().archive
    return [_fs_row(group, fs) for group, fs in ext.iter_file_systems()] if ext else []


# ---------------------------------------------------------------------------- wiring


def register(subparsers: argparse._SubParsersAction) -> None:
    epilog = (__doc__ or "").split("\n\n", 1)[1]
    config = subparsers.add_parser(
        "config", help="export, import, read and edit the store", epilog=epilog
    )
    sub = config.add_subparsers(dest="action", required=True)
    p = sub.add_parser("export", help="print the whole configuration (secrets left out)")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(handler=_command(_export), reads_config=True)
    p = sub.add_parser("import", help="replace the whole configuration with a JSON file")
    p.add_argument("file")
    p.set_defaults(handler=_command(_import))
    p = sub.add_parser("get", help="print the node at a path")
    p.add_argument("path", help=f"JSON Pointer, e.g. {DEVICES_PATH}/archived")
    p.add_argument(
        "--defaults", action="store_true", help="fill in the settings left at their defaults"
    )
    p.set_defaults(handler=_command(_get), reads_config=True)
    p = sub.add_parser("set", help="replace the node at a path with a JSON value")
    p.add_argument("path")
    p.add_argument("value", help="JSON (a bare word counts as a string)")
    p.set_defaults(handler=_command(_set))
    p = sub.add_parser("list", help="list the keys below a path (default: the devices)")
    p.add_argument("path", nargs="?", default=DEVICES_PATH)
    p.set_defaults(handler=_command(_list), reads_config=True)
    p = sub.add_parser("diff", help="show where a JSON file differs from the store")
    p.add_argument("file")
    p.set_defaults(handler=_command(_diff), reads_config=True)
    p = sub.add_parser(
        "init", help="create the archive's device if missing; record IndexPath if unset"
    )
    p.add_argument("--index", metavar="PATH", help="the index file to record as IndexPath")
    p.set_defaults(handler=_command(_init))

    ae = subparsers.add_parser("ae", help="remote application entities", epilog=epilog)
    sub = ae.add_subparsers(dest="action", required=True)
    p = sub.add_parser("add", help="register a remote AE (a device of its own)")
    p.add_argument("aet")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--no-store", action="store_true", help="refuse its C-STOREs")
    p.add_argument("--no-query", action="store_true", help="refuse its C-FINDs")
    p.add_argument("--no-retrieve", action="store_true", help="refuse its C-MOVE/C-GETs")
    p.add_argument(
        "--allow-host",
        action="append",
        metavar="HOST",
        help="accept it only from this host (repeatable; default: any)",
    )
    p.set_defaults(handler=_command(_ae_add))
    p = sub.add_parser("list", help="list every AE with its host and port")
    p.set_defaults(handler=_command(_ae_list), reads_config=True)
    p = sub.add_parser("remove", help="remove a remote AE and its device")
    p.add_argument("aet")
    p.set_defaults(handler=_command(_ae_remove), reads_config=True)

    fs = subparsers.add_parser("fs", help="file systems of the archive", epilog=epilog)
    sub = fs.add_subparsers(dest="action", required=True)
    for name, handler, text in (
        ("add", _fs_add, "add a file system to a group ('tar:' prefix: it holds tars)"),
        ("list", _fs_list, "list the archive's file systems"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--device",
            default=DEFAULT_DEVICE_NAME,
            help="the archive's device (default: %(default)s)",
        )
        p.set_defaults(handler=_command(handler))
    sub.choices["list"].set_defaults(reads_config=True)
    add = sub.choices["add"]
    add.add_argument(
        "--create", action="store_true", help="create the directory if it does not exist"
    )
    add.add_argument("--group", required=True, help="e.g. ONLINE_STORAGE, NEARLINE_STORAGE")
    add.add_argument("--status", choices=[s.value for s in FileSystemStatus], default="RW")
    add.add_argument("--availability", choices=[a.value for a in Availability], default="ONLINE")
    add.add_argument(
        "path",
        help="an absolute directory this user can write; tar:DIR for tars, on a live hsmfs mount",
    )
