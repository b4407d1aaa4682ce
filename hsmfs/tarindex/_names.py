"""Member-name rules: turn a name from a tar header into a safe path below the tar root."""

from __future__ import annotations

NAME_ENCODING = "utf-8"
# tarfile decodes undecodable header bytes as lone surrogates; this handler turns them
# back into the original bytes, so names round-trip exactly.
NAME_ERRORS = "surrogateescape"
MAX_COMPONENT_BYTES = 255  # NAME_MAX on Linux
MAX_PATH_BYTES = 4095  # PATH_MAX minus the terminating NUL


class UnsafeName(ValueError):
    """A member name that cannot be placed safely below the tar root; str() is the reason."""


def encode_name(name: str) -> bytes:
    """The bytes of a member name as they appear in the tar header."""
    return name.encode(NAME_ENCODING, NAME_ERRORS)


def decode_name(raw: bytes) -> str:
    """The inverse of `encode_name`."""
    return raw.decode(NAME_ENCODING, NAME_ERRORS)


def normalize_member_path(name: str) -> str:
    """Return `name` as a relative path without empty, "." or ".." components.

    Leading "/" and "./" are dropped as tar does; "" is the tar root. A ".." component,
    a NUL byte or an over-long name raises UnsafeName: such a member is never indexed.
    """
    if "\0" in name:
        raise UnsafeName("contains a NUL byte")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeName("has a '..' component that could point outside the tar")
    path = "/".join(parts)
    try:
        length = len(encode_name(path))
        if length > MAX_PATH_BYTES:
            raise UnsafeName(f"is longer than {MAX_PATH_BYTES} bytes")
        # Only a path longer than NAME_MAX can hold a component that is.
        if length > MAX_COMPONENT_BYTES and any(
            len(encode_name(part)) > MAX_COMPONENT_BYTES for part in parts
        ):
            raise UnsafeName(f"has a component longer than {MAX_COMPONENT_BYTES} bytes")
    except UnicodeEncodeError:
        raise UnsafeName("is not representable as bytes") from None
    return path


def lexical_join(directory: str, target: str) -> str:
    """Join a symlink target to the link's directory, clamped at the tar root.

    An absolute target starts at the tar root and ".." at the root stays at the root (as
    in a chroot), so the result never names anything outside the tar.
    """
    parts = [] if target.startswith("/") else [p for p in directory.split("/") if p]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def parent_of(path: str) -> str:
    """The directory that holds `path` ("" for a top-level member)."""
    return path.rpartition("/")[0]


def sort_key(name: str) -> bytes:
    """Order names by their bytes, the order LMDB keeps keys in."""
    return encode_name(name)
