"""systemd/install.sh into a scratch root, the units it installs (systemd-analyze verify),
the default configuration files, and the mount helper driven by mount(8) and umount(8)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hsmfs.config import Config, load_config
from tests.mounts import wait_for

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
SBIN = Path("/sbin")
DEVICES = "/dicomConfigurationRoot/dicomDevicesRoot"


@dataclass
class Installed:
    root: Path
    env: dict[str, str]
    output: str
    rerun_output: str

    def path(self, name: str) -> Path:
        return Path(self.env[name])

    @property
    def instance(self) -> str:
        escaped = subprocess.run(
            ["systemd-escape", "--path", self.env["NEARLINE"]],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return escaped.stdout.strip()


def run_install(env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(SYSTEMD / "install.sh")], env={**os.environ, **env},
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    env = {
        "PREFIX": str(root / "opt" / "hsmfs-archived"),
        "CONF_DIR": str(root / "etc" / "hsmfs-archived"),
        "UNIT_DIR": str(root / "etc" / "systemd" / "system"),
        "SBIN_DIR": str(root / "sbin"),
        "NEARLINE": str(root / "srv" / "near-line"),  # a '-' to escape: near\x2dline
        "ONLINE": str(root / "srv" / "online"),
        "HSMFS_STATE_ROOT": str(root / "var" / "lib" / "hsmfs"),
        "HSMFS_CACHE_ROOT": str(root / "var" / "cache" / "hsmfs"),
        "ARCHIVED_STATE": str(root / "var" / "lib" / "archived"),
    }
    output = run_install(env)
    # The operator edits the configuration; a second run (an upgrade) must keep it.
    config = Path(env["CONF_DIR"]) / "hsmfs.toml"
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    rerun = run_install(env)
    return Installed(root, env, output, rerun)


def test_install_places_venv_units_helper_config_and_directories(installed: Installed) -> None:
    prefix = installed.path("PREFIX")
    for tool in ("hsmfs", "hsmctl", "archived", "archivectl"):
        result = subprocess.run([prefix / "bin" / tool, "--help"], capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr
    units = installed.path("UNIT_DIR")
    assert {p.name for p in units.iterdir()} == {"hsmfs@.service", "archived.service"}
    helper = installed.path("SBIN_DIR") / "mount.fuse.hsmfs"
    assert os.access(helper, os.X_OK)
    assert (installed.path("SBIN_DIR") / "umount.fuse.hsmfs").resolve() == helper.resolve()
    assert f"{prefix}/bin/hsmfs" in helper.read_text()  # the helper finds this install
    instance = installed.instance
    directories = [installed.path(name) for name in ("NEARLINE", "ONLINE", "ARCHIVED_STATE")]
    directories += [installed.path(name) / instance
                    for name in ("HSMFS_STATE_ROOT", "HSMFS_CACHE_ROOT")]  # fmt: skip
    for directory in directories:
        assert directory.is_dir(), directory
    # The units point at the chosen locations, not at the defaults.
    archived_unit = (units / "archived.service").read_text()
    assert f"Requires=hsmfs@{instance}.service" in archived_unit
    assert f"RequiresMountsFor={installed.env['NEARLINE']} {installed.env['ONLINE']}" in (
        archived_unit
    )
    assert f"ExecStart={prefix}/bin/archived serve" in archived_unit
    if not Path("/run/systemd/system").is_dir():
        assert "systemd is not running here" in installed.output
        assert f"systemctl enable --now hsmfs@{instance}.service archived.service" in (
            installed.output
        )


def test_install_configuration_is_commented_and_kept_on_upgrade(installed: Installed) -> None:
    conf = installed.path("CONF_DIR")
    config = load_config(conf / "hsmfs.toml")
    assert config.metrics.port == 9730  # the only key install.sh sets
    assert config.model_dump(exclude={"metrics"}) == Config().model_dump(exclude={"metrics"})
    assert "# edited by the operator" in (conf / "hsmfs.toml").read_text()
    assert (conf / "hsmfs.toml.dist").is_file()
    assert f"kept {conf / 'hsmfs.toml'}" in installed.rerun_output
    env = (conf / "archived.env").read_text()
    assert "ARCHIVED_METRICS=127.0.0.1:9731" in env.splitlines()
    store = f"lmdb://{installed.env['ARCHIVED_STATE']}/conf"
    assert f"ARCHIVED_CONFIG={store}" in env.splitlines()  # archived and archivectl read it


def test_install_records_the_index_path_in_the_configuration(installed: Installed) -> None:
    state = installed.env["ARCHIVED_STATE"]
    ext = f"{DEVICES}/archived/deviceExtensions/ArchiveDeviceExtension"
    stored = subprocess.run(
        [installed.path("PREFIX") / "bin" / "archivectl", "--config", f"lmdb://{state}/conf",
         "config", "get", ext],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    # Stored, not a default: archived and archivectl read the same index without --index.
    assert json.loads(stored.stdout)["IndexPath"] == f"{state}/index.sqlite"
    assert f'IndexPath "{state}/index.sqlite"' in installed.output
    assert "fs add --group NEARLINE_STORAGE tar:" in installed.output


def test_systemd_analyze_verify_every_unit(installed: Installed, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: systemd/bootstrap.sh installs the systemd package")
    units = installed.path("UNIT_DIR")
    # The template's instance, as `systemctl enable hsmfs@INSTANCE` would make it.
    instance_unit = tmp_path / f"hsmfs@{installed.instance}.service"
    instance_unit.symlink_to(units / "hsmfs@.service")
    archived_unit = tmp_path / "archived.service"
    archived_unit.symlink_to(units / "archived.service")
    mount_unit = installed.path("CONF_DIR") / "examples" / f"{installed.instance}.mount"
    assert "Where=" + installed.env["NEARLINE"] in mount_unit.read_text()
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(instance_unit), str(archived_unit),
         str(mount_unit)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def commented_keys(text: str) -> dict[str, dict[str, str]]:
    """{section: {key: value text}} of every `# key = value` line."""
    keys: dict[str, dict[str, str]] = {}
    section = ""
    for line in text.splitlines():
        if m := re.fullmatch(r"\[(\w+)\]", line):
            section = m.group(1)
            keys[section] = {}
        elif m := re.fullmatch(r"# (\w+) = (.+)", line):
            keys[section][m.group(1)] = m.group(2)
    return keys


def test_default_hsmfs_toml_lists_every_key_with_its_default() -> None:
    text = (SYSTEMD / "hsmfs.toml").read_text()
    documented = commented_keys(text)
    model = {name: set(f.annotation.model_fields) for name, f in Config.model_fields.items()}
    assert {s: set(k) for s, k in documented.items()} == model
    defaults = Config().model_dump()
    for section, keys in documented.items():
        for key, value in keys.items():
            parsed = tomllib.loads(f"v = {value}")["v"]
            if defaults[section][key] is None:  # no default: an example value, still valid
                Config.model_validate({section: {key: parsed}})
            else:
                assert parsed == defaults[section][key], f"[{section}] {key}"
    assert load_config(SYSTEMD / "hsmfs.toml") == Config()


def test_default_archived_env_lists_every_variable() -> None:
    names = set()
    for source in (REPO / "archived").rglob("*.py"):
        names |= set(re.findall(r'"(ARCHIVED_[A-Z_]+)"', source.read_text()))
    assert {"ARCHIVED_CONFIG", "ARCHIVED_INDEX", "ARCHIVED_METRICS"} <= names
    env = (SYSTEMD / "archived.env").read_text().splitlines()
    for name in names:
        assert any(line.startswith(f"# {name}=") for line in env), name


# --- the mount helper, through mount(8) and umount(8) -------------------------------------


@pytest.fixture
def helper_installed(installed: Installed) -> Iterator[Path]:
    """/sbin/mount.fuse.hsmfs and umount.fuse.hsmfs pointing at the scratch install."""
    links = [SBIN / "mount.fuse.hsmfs", SBIN / "umount.fuse.hsmfs"]
    if any(link.exists() or link.is_symlink() for link in links):
        pytest.skip("a mount helper is already installed in /sbin; not replacing it")
    if not os.access(SBIN, os.W_OK):
        pytest.skip("/sbin is not writable: mount(8) finds helpers only there")
    helper = installed.path("SBIN_DIR") / "mount.fuse.hsmfs"
    for link in links:
        link.symlink_to(helper)
    try:
        yield helper
    finally:
        for link in links:
            link.unlink(missing_ok=True)


def mounted_type(mountpoint: Path) -> str | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(mountpoint):
            return fields[2]
    return None


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def mountpoint(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    yield mnt
    if mounted_type(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)


def test_mount_and_umount_through_the_helper(
    helper_installed: Path, mountpoint: Path, tmp_path: Path
) -> None:
    state, cache = tmp_path / "state", tmp_path / "cache"
    result = subprocess.run(
        ["mount", "-t", "fuse.hsmfs", "hsmfs", str(mountpoint),
         "-o", f"cache={cache},state={state},_netdev,noatime"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert mounted_type(mountpoint) == "fuse.hsmfs"
    (mountpoint / "file").write_bytes(b"through mount(8)")
    daemon = json.loads(os.getxattr(mountpoint, "user.hsm.daemon"))
    assert daemon["state"] == str(state) and daemon["cache"] == str(cache)

    result = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    # umount(8) ran umount.fuse.hsmfs, which waits for the daemon: gone, and clean.
    assert mounted_type(mountpoint) is None
    assert not pid_alive(int(daemon["pid"]))
    assert "catalog snapshot stored" in (state / "hsmfs.log").read_text()
    assert list(mountpoint.iterdir()) == []


def test_fstab_line_with_an_object_store_url(
    helper_installed: Path, mountpoint: Path, tmp_path: Path
) -> None:
    objects = tmp_path / "objects"
    objects.mkdir()
    config = tmp_path / "hsmfs.toml"
    config.write_text("[hsm]\nmigrate_after = 0\nscan_interval = 0.1\n")
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"file://{objects}  {mountpoint}  fuse.hsmfs  "
        f"cache={tmp_path / 'cache'},state={tmp_path / 'state'},config={config},nofail,"
        "x-systemd.requires=network-online.target  0 0\n"
    )
    result = subprocess.run(["mount", "--fstab", str(fstab), str(mountpoint)],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (mountpoint / "study.tar").write_bytes(b"x" * 4096)
    # Migrated into the object store the fstab line named.
    wait_for(lambda: (objects / "study.tar").is_file(), what="the object in the fstab's store")
    result = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert mounted_type(mountpoint) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [("state=/x,cache=/y,ro", "read-only"), ("state=/x,cache=/y,colour=red", "'colour=red'")],
)
def test_helper_refuses_bad_options_in_one_line(
    helper_installed: Path, mountpoint: Path, options: str, message: str
) -> None:
    result = subprocess.run(
        [str(helper_installed), "hsmfs", str(mountpoint), "-o", options],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert message in result.stderr and str(mountpoint) in result.stderr
    assert result.stderr.count("\n") == 1
    assert mounted_type(mountpoint) is None
