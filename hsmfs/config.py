"""hsmfs configuration: a TOML file validated into typed settings.

Every key is documented in the README ("Configuration reference"); ``hsmfs config
show`` prints the effective values.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import UsageError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FsSettings(_Section):
    entry_timeout: float = Field(60.0, ge=0, description="seconds the kernel caches names")
    attr_timeout: float = Field(60.0, ge=0, description="seconds the kernel caches attributes")
    max_tasks: int = Field(64, ge=1, description="FUSE requests handled at once")
    io_threads: int = Field(8, ge=1, description="threads for blocking cache-file I/O")
    allow_other: bool = Field(True, description="let every user (not only root) use the mount")
    read_ahead_kb: int = Field(1024, ge=0, description="kernel read-ahead of the mount (KiB)")
    sync_interval: float = Field(5.0, gt=0, description="seconds between catalog syncs to disk")


class Config(_Section):
    fs: FsSettings = FsSettings()

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, safe to print."""
        return self.model_dump(mode="json")


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text())
        return Config.model_validate(data)
    except FileNotFoundError as exc:
        raise UsageError(f"configuration file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"configuration file {path} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise UsageError(f"configuration file {path}: {problems}") from exc
