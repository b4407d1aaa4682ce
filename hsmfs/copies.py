"""Whether the object store still holds the copy that a file's HSM record describes.

One rule, used before a release frees the cache data (the copy must be there, or the
release would delete the last one) and by ``hsmctl recheck`` (a lost file whose copy is
back becomes released again): the object under the recorded key has the recorded size,
and the recorded ETag (S3) or MD5 (the object's metadata).
"""

from __future__ import annotations

import logging
from typing import Any

from .backends import ObjectInfo
from .catalog import Catalog, HsmState

log = logging.getLogger(__name__)

# What the log says about a lost file.
RECHECK = "If the object comes back (a restored bucket, say), run `hsmctl recheck PATH`"


def copy_problem(record: dict[str, Any], info: ObjectInfo | None) -> str | None:
    """Why ``info`` (a HEAD of the recorded key) is not the copy ``record`` describes, or
    None if it is."""
    key = record.get("key")
    if not key:
        return "no copy was ever recorded for it"
    if info is None:
        return f"its object {key} is missing from the object store"
    if record.get("size") is not None and info.size != record["size"]:
        return f"its object {key} has {info.size} bytes, not the {record['size']} migrated"
    etag = record.get("etag")
    if etag and info.etag and info.etag != etag:
        return f"its object {key} was replaced (ETag {info.etag}, migrated as {etag})"
    md5 = record.get("md5")
    if md5 and info.md5 and info.md5 != md5:
        return f"its object {key} has MD5 {info.md5}, not the {md5} migrated"
    if not (etag and info.etag) and not (md5 and info.md5):
        return f"its object {key} has no checksum to compare with the one migrated"
    return None


def mark_lost(
    catalog: Catalog, ino: int, reason: object, *, only_from: HsmState | None = None
) -> bool:
    """``ino`` has no valid copy left: mark it lost (only if it is in ``only_from``, when
    given) and log what happened and what to do; False if it was not marked."""
    with catalog.write() as txn:
        marked = txn.set_hsm_state(ino, HsmState.LOST, only_from=only_from)
        path = txn.path_of(ino)
    if marked:
        log.error("%s is lost: %s; reads fail with EIO. %s", path or f"inode {ino}", reason,
                  RECHECK)  # fmt: skip
    return marked
