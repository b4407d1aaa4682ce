"""The upgrade runner: brings the stored configuration to the version a deployment expects.

Driven by a settings file (JSON):
    {"upgradeToVersion": "2.1",
     "upgradeScriptsToRun": ["package.module:ScriptClass", ...],
     "properties": {"key": "value"},
     "activeUpgradeRunnerDeployment": "archived-a"}

A script is an importable class with a `version` and an `upgrade(context)` method. It runs if
it never ran or its version is higher than the last one run; equal: skipped; lower: skipped
with a warning. All scripts of one upgrade run in one transaction with the new version
record: any failure rolls everything back and raises UpgradeError (start-up fails). Only the
active deployment runs scripts; any other waits until the stored version is reached.
The record lives at /dicomConfigurationRoot/metadataRoot/versioning.
"""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from archived.conf.errors import ConfigError, NotFoundError, UpgradeError
from archived.conf.store import ConfigStore

log = logging.getLogger(__name__)

VERSIONING_PATH = "/dicomConfigurationRoot/metadataRoot/versioning"


class UpgradeSettings(BaseModel):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, extra="forbid")

    upgrade_to_version: str = Field(alias="upgradeToVersion", min_length=1)
    upgrade_scripts_to_run: list[str] = Field(default_factory=list, alias="upgradeScriptsToRun")
    properties: dict[str, str] = Field(default_factory=dict)
    active_upgrade_runner_deployment: str = Field(alias="activeUpgradeRunnerDeployment")


def load_upgrade_settings(path: str) -> UpgradeSettings:
    try:
        with open(path, encoding="utf-8") as f:
            return UpgradeSettings.model_validate(json.load(f))
    except OSError as exc:
        raise UpgradeError(f"cannot read settings file {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise UpgradeError(f"settings file {path} is not valid: {first}; fix it") from None


@dataclass
class UpgradeContext:
    """What a script gets: the store (write through it), the settings' properties, versions."""

    store: ConfigStore
    properties: dict[str, str]
    from_version: str | None  # the configuration's version before this upgrade
    to_version: str
    last_run_version: str | None  # of the running script, None if it never ran


class UpgradeScript(Protocol):
    version: ClassVar[str]

    def upgrade(self, context: UpgradeContext) -> None: ...


@dataclass
class UpgradeReport:
    version: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    downgraded: list[str] = field(default_factory=list)  # skipped with a warning
    waited: bool = False


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """'1.10' > '1.9'; numeric parts compare as numbers, others as text."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.\-+_]", version)
    )


def _load_script(name: str) -> type[UpgradeScript]:
    module_name, _, attr = name.rpartition(":") if ":" in name else name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UpgradeError(f"cannot import upgrade script {name!r}: {exc}") from None
    if not isinstance(getattr(cls, "version", None), str) or not callable(
        getattr(cls, "upgrade", None)
    ):
        raise UpgradeError(f"upgrade script {name!r} needs a str `version` and `upgrade(context)`")
    return cls


def stored_version(store: ConfigStore) -> str | None:
    return _versioning(store).get("currentVersion")


def _versioning(store: ConfigStore) -> dict[str, Any]:
    try:
        node = store.get_node(VERSIONING_PATH)
    except NotFoundError:
        return {}
    return node if isinstance(node, dict) else {}


class UpgradeRunner:
    def __init__(
        self,
        store: ConfigStore,
        settings: UpgradeSettings,
        deployment: str,
        wait_timeout: float = 600.0,
        wait_interval: float = 0.2,
    ) -> None:
        self.store = store
        self.settings = settings
        self.deployment = deployment
        self.wait_timeout = wait_timeout
        self.wait_interval = wait_interval

    @property
    def active(self) -> bool:
        return self.deployment == self.settings.active_upgrade_runner_deployment

    def run(self) -> UpgradeReport:
        if not self.active:
            return self._wait()
        scripts = [(name, _load_script(name)) for name in self.settings.upgrade_scripts_to_run]
        try:
            return self.store.batch(lambda: self._upgrade(scripts))
        except UpgradeError:
            raise
        except Exception as exc:
            raise UpgradeError(
                f"{exc}; the configuration was left as it was, fix the script or settings "
                "and start again"
            ) from exc

    def _upgrade(self, scripts: list[tuple[str, type[UpgradeScript]]]) -> UpgradeReport:
        target = self.settings.upgrade_to_version
        record = _versioning(self.store)
        ran_before: dict[str, Any] = dict(record.get("scripts", {}))
        report = UpgradeReport(version=target)
        for name, cls in scripts:
            last = ran_before.get(name, {}).get("version")
            if last is not None and version_key(cls.version) == version_key(last):
                report.skipped.append(name)
                continue
            if last is not None and version_key(cls.version) < version_key(last):
                log.warning(
                    "upgrade script %s has version %s, lower than %s that already ran; skipped",
                    name,
                    cls.version,
                    last,
                )
                report.downgraded.append(name)
                continue
            context = UpgradeContext(
                self.store,
                dict(self.settings.properties),
                record.get("currentVersion"),
                target,
                last,
            )
            try:
                cls().upgrade(context)
            except ConfigError as exc:
                raise UpgradeError(f"script {name} failed: {exc}") from exc
            except Exception as exc:
                raise UpgradeError(f"script {name} failed: {type(exc).__name__}: {exc}") from exc
            ran_before[name] = {
                "version": cls.version,
                "ranAt": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
            report.ran.append(name)
        new_record = {**_versioning(self.store), "currentVersion": target, "scripts": ran_before}
        self.store.persist_node(VERSIONING_PATH, new_record)
        return report

    def _wait(self) -> UpgradeReport:
        target = self.settings.upgrade_to_version
        deadline = time.monotonic() + self.wait_timeout
        while stored_version(self.store) != target:
            if time.monotonic() > deadline:
                raise UpgradeError(
                    f"waited {self.wait_timeout:.0f} s for deployment "
                    f"{self.settings.active_upgrade_runner_deployment!r} to upgrade the "
                    f"configuration to {target} (it is at {stored_version(self.store)}); "
                    "start that deployment or make this one the active runner"
                )
            time.sleep(self.wait_interval)
        return UpgradeReport(version=target, waited=True)
