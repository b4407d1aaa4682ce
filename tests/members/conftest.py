"""Fixtures of the tar member tests: hsmfs mounts on a real moto S3 endpoint over HTTP.

The mount factory and the S3 store are the HSM tests' own (tests/hsm/conftest.py)."""

from __future__ import annotations

from tests.hsm.conftest import make_mount, s3

__all__ = ["make_mount", "s3"]
