"""Image names and digests: what a user may call an image, checked before anything is read.

The grammar is the one docker and podman accept (``[host[:port]/]path[:tag]``, lowercase
path components), so a name that works with those tools works here and the other way round.
A name without a tag means ``:latest``.  Digests are ``sha256:<64 hex>`` (``sha512`` is read
too: the OCI spec allows it).
"""

from __future__ import annotations

import hashlib
import re

from runtimes.image.model import ImageError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)+)(?::[0-9]+)?"
_REPOSITORY = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
MAX_NAME = 255
DEFAULT_TAG = "latest"

_DIGEST = re.compile(r"^(?P<alg>sha256):(?P<hex>[a-f0-9]{64})$|^(?P<alg5>sha512):(?P<hex5>[a-f0-9]{128})$")
_DIGEST_PREFIX = re.compile(r"^(?:sha256:)?[a-f0-9]{4,64}$")


def split(name: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); the tag is what follows the last ``:`` after the last ``/``."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, ""


def normalise(name: str) -> str:
    """``name`` checked and completed with ``:latest``; an ImageError says what is wrong with it."""
    if not isinstance(name, str) or not name:
        raise ImageError("an image name must not be empty")
    shown = name if len(name) <= 80 else name[:77] + "..."
    if "@" in name:
        raise ImageError(f"image name {shown!r}: a name cannot carry a digest (use NAME[:TAG])")
    repo, tag = split(name)
    if name.endswith(":"):
        raise ImageError(f"image name {shown!r}: the tag after ':' is empty")
    if not _REPOSITORY.match(repo):
        raise ImageError(f"image name {shown!r} is not a valid name "
                         "(lowercase letters, digits and . _ - separated by /, optionally HOST[:PORT]/ first)")
    if tag and not _TAG.match(tag):
        raise ImageError(f"image name {shown!r}: tag {tag!r} is not valid (letters, digits, _ . -; at most 128)")
    full = f"{repo}:{tag or DEFAULT_TAG}"
    if len(full) > MAX_NAME:
        raise ImageError(f"image name {shown!r} is longer than {MAX_NAME} characters")
    return full


def is_valid(name: str) -> bool:
    try:
        normalise(name)
    except ImageError:
        return False
    return True


def check_digest(value: object, what: str) -> str:
    """``value`` if it is a digest this store can verify (sha256 or sha512), else an ImageError."""
    if not isinstance(value, str) or not _DIGEST.match(value):
        shown = repr(value)[:90]
        raise ImageError(f"{what}: {shown} is not a sha256/sha512 digest")
    return value


def digest_hex(digest: str) -> str:
    return digest.partition(":")[2]


def looks_like_digest_prefix(ref: str) -> bool:
    """``sha256:abcd…`` or a bare hex prefix of at least 4 digits (what ``image ls`` shows)."""
    return bool(_DIGEST_PREFIX.match(ref))


def short(digest: str) -> str:
    return digest_hex(digest)[:12]


def matches(data: bytes, digest: str) -> bool:
    """Whether ``data`` is what ``digest`` (``sha256:…`` or ``sha512:…``) names."""
    alg, _, hexd = digest.partition(":")
    return alg in ("sha256", "sha512") and hashlib.new(alg, data).hexdigest() == hexd
