"""Exceptions of archived.conf: one small hierarchy, each class with its own exit code.

The docstring of each class is its message template (borg's convention); `str(error)` is one
line that names the path, device or AE involved and what to do.
"""

from __future__ import annotations


class ConfigError(Exception):
    """configuration error: {detail}"""

    exit_code = 70

    def __init__(self, detail: str, **fields: object) -> None:
        self.detail = detail
        self.fields = fields
        template = (type(self).__doc__ or "{detail}").strip().splitlines()[0]
        super().__init__(template.format(detail=detail, **fields))


class StoreUnavailableError(ConfigError):
    """cannot open configuration store {uri}: {detail}"""

    exit_code = 71


class NotFoundError(ConfigError):
    """{detail}"""

    exit_code = 72


class IntegrityError(ConfigError):
    """integrity check failed at {path}: {detail}; fix the value and retry"""

    exit_code = 73

    @property
    def path(self) -> str:
        return str(self.fields["path"])


class OptimisticLockError(ConfigError):
    """{path} was changed by another writer since you loaded it: {detail}; load a fresh copy, redo your change and merge again"""  # noqa: E501

    exit_code = 74

    @property
    def path(self) -> str:
        return str(self.fields["path"])


class ReadOnlyConfigError(ConfigError):
    """{detail} is the process's shared read-only configuration; load a fresh copy with store.find_device(name) and change that"""  # noqa: E501

    exit_code = 75


class UpgradeError(ConfigError):
    """configuration upgrade failed: {detail}"""

    exit_code = 76


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        ConfigError,
        StoreUnavailableError,
        NotFoundError,
        IntegrityError,
        OptimisticLockError,
        ReadOnlyConfigError,
        UpgradeError,
    )
}
