"""hsmfs configuration: a TOML file validated into typed settings.

Every key is documented in the README ("Configuration reference"); ``hsmfs config
show`` prints the effective values.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


def parse_size(text: str | int, total: int) -> int:
    """Bytes from "80%" (of ``total``), "20GiB", "500M" or a plain number of bytes."""
    if isinstance(text, int):
        return text
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    if value.endswith("%"):
        return int(total * float(value[:-1]) / 100)
    factor = 1
    for unit, size in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)):
        if value.endswith(unit):
            value, factor = value[:-1], size
            break
    return int(float(value) * factor)


def _check_size(text: str | int) -> str | int:
    try:
        parse_size(text, 100)
    except ValueError:
        raise ValueError(f"{text!r} is not a size: use 80%, 20GiB, 500M or bytes") from None
    return text


class HsmSettings(_Section):
    backend: str | None = Field(
        None,
        description="object store URL (s3://BUCKET/PREFIX?endpoint=...) or file:///DIR; "
        "default: file://STATE/objects",
    )
    migrate_after: float = Field(
        60.0, ge=0, description="seconds a closed file stays unmodified before migration"
    )
    max_uploads: int = Field(4, ge=1, description="concurrent uploads")
    max_stages: int = Field(4, ge=1, description="concurrent stages (downloads of whole files)")
    high_watermark: str | int = Field("90%", description="cache use that starts releasing")
    low_watermark: str | int = Field("80%", description="cache use that releasing stops at")
    release_after: float | None = Field(
        None, ge=0, description="release archived files not accessed for this many seconds"
    )
    member_prefetch: Literal["whole", "none"] = Field(
        "whole", description="on the first member read of a released tar, stage the whole tar"
    )
    stage_timeout: float = Field(
        120.0, gt=0, description="seconds a read waits for staging before EIO"
    )
    retry_min: float = Field(
        5.0, gt=0, description="first retry delay of a failed upload (doubles)"
    )
    retry_max: float = Field(600.0, gt=0, description="longest retry delay of a failed upload")
    scan_interval: float = Field(1.0, gt=0, description="seconds between policy runs")
    snapshot_interval: float = Field(
        30.0,
        gt=0,
        description="seconds from the first unsaved catalog change to the catalog snapshot "
        "that saves it in the object store (spaced at least 10x the last snapshot's time)",
    )
    connect_timeout: float = Field(5.0, gt=0, description="object store connect timeout (s)")
    read_timeout: float = Field(30.0, gt=0, description="object store read timeout (s)")

    _v_high = field_validator("high_watermark", "low_watermark")(_check_size)


class MetricsSettings(_Section):
    address: str = Field("127.0.0.1", description="address the metrics endpoint listens on")
    port: int = Field(
        0, ge=0, le=65535, description="Prometheus metrics port (/metrics); 0: no endpoint"
    )


class Config(_Section):
    fs: FsSettings = FsSettings()
    hsm: HsmSettings = HsmSettings()
    metrics: MetricsSettings = MetricsSettings()

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, safe to print."""
        data = self.model_dump(mode="json")
        if data["hsm"]["backend"]:
            data["hsm"]["backend"] = mask_url(data["hsm"]["backend"])
        return data


def mask_url(url: str) -> str:
    """A URL with any user:password part and secret-looking query values masked; a query
    value that is itself a URL (endpoint=http://user:pw@host) is masked the same way."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    query = "&".join(
        f"{k}=***"
        if any(w in k.lower() for w in ("secret", "key", "token", "password"))
        else f"{k}={mask_url(v) if '://' in v else v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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
