"""Which configuration store archivectl uses, and why: the one place that decides it.

First found wins:
  1. ``--config URI`` on the command line;
  2. ``$ARCHIVED_CONFIG``;
  3. the ``ARCHIVED_CONFIG=`` line of /etc/hsmfs-archived/archived.env, the settings of the
     systemd service (systemd/install.sh writes it);
  4. the default store, lmdb:///var/lib/archived/conf, if it exists;
  5. the quick start's store, lmdb:///srv/hsm-quickstart/archived-conf, if it exists.

1-3 are explicit: they are used whether or not the store exists yet. Of 4 and 5 the first
that exists is used; with neither, commands that write create the default store, and
commands that only read say where they looked (``ConfigLocation.missing()``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from archived.conf.backends import DEFAULT_URI, ENV_VAR

SERVICE_ENV_FILE = Path("/etc/hsmfs-archived/archived.env")
QUICKSTART_URI = "lmdb:///srv/hsm-quickstart/archived-conf"
# Used when they exist, in this order, each with the words messages name it by.
IMPLICIT = ((DEFAULT_URI, "the default"), (QUICKSTART_URI, "the quick start's"))


@dataclass(frozen=True)
class ConfigLocation:
    uri: str
    source: str  # where the URI came from, for messages
    looked_at: tuple[str, ...] = field(default=())  # the places tried before, with outcome
    fallback: bool = False  # nothing found: the default, itself among ``looked_at``

    @property
    def exists(self) -> bool:
        return store_exists(self.uri)

    def missing(self) -> str:
        """The message for a store that is not there, naming every place looked at."""
        mine = () if self.fallback else (f"{self.uri} ({self.source}): no store there",)
        places = "; ".join((*self.looked_at, *mine))
        return (
            f"no configuration store found (looked at: {places}); pass --config URI or set "
            f"${ENV_VAR}, or set one up: `bash systemd/bootstrap.sh run` (the quick start) "
            "or systemd/install.sh"
        )


def store_exists(uri: str) -> bool:
    """True if the store at ``uri`` has been created (opening one would create it)."""
    parsed = urlparse(uri)
    if parsed.scheme == "lmdb":
        return (Path(parsed.path) / "data.mdb").is_file()
    if parsed.scheme == "json":
        return Path(parsed.path).is_file()
    return True  # an unknown scheme: let opening it give its own error


def env_file_uri(path: Path) -> str | None:
    """The value of an ``ARCHIVED_CONFIG=`` line (systemd EnvironmentFile syntax), if any."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    value = None
    for line in lines:
        key, sep, rest = line.strip().partition("=")
        if sep and key.strip() == ENV_VAR:
            value = rest.strip().strip("\"'") or None  # the last assignment wins, as in systemd
    return value


def locate_config(
    given: str | None,
    env_file: Path = SERVICE_ENV_FILE,
    implicit: Sequence[tuple[str, str]] = IMPLICIT,
    environ: Mapping[str, str] = os.environ,
) -> ConfigLocation:
    """The store by the precedence above (``environ``: a shell's environment)."""
    if given:
        return ConfigLocation(given, "--config")
    looked = ["--config: not given"]
    from_env = environ.get(ENV_VAR)
    if from_env:
        return ConfigLocation(from_env, f"${ENV_VAR}", tuple(looked))
    looked.append(f"${ENV_VAR}: not set")
    from_file = env_file_uri(env_file)
    if from_file:
        return ConfigLocation(from_file, f"{ENV_VAR} in {env_file}", tuple(looked))
    looked.append(f"{env_file}: {'no ' + ENV_VAR + ' line' if env_file.exists() else 'absent'}")
    for uri, source in implicit:
        if store_exists(uri):
            return ConfigLocation(uri, source, tuple(looked))
        looked.append(f"{uri} ({source}): no store there")
    uri, source = implicit[0]
    return ConfigLocation(uri, source, tuple(looked), fallback=True)
