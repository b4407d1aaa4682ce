"""How hsmfs's FUSE handlers fail: every failure becomes the errno the kernel should see.

``OSError`` keeps its errno; anything unexpected is logged with its traceback and becomes
EIO, so one bad request never takes the mount down.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from .catalog import NAME_MAX, Inode, Txn

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def fuse_op(func: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Translate every failure of a handler into the errno the kernel should see."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await func(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from exc
        except Exception:
            log.exception("internal error in %s%r; answered EIO", func.__name__, args[1:])
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def fail(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


def check_name(name: bytes) -> None:
    if len(name) > NAME_MAX:
        raise fail(errno.ENAMETOOLONG)


def existing(txn: Txn, ino: int) -> Inode:
    """The inode ``ino``, or ENOENT."""
    inode = txn.get_inode(ino)
    if inode is None:
        raise fail(errno.ENOENT)
    return inode
