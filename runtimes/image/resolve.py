"""Finding an imported image by the reference a scenario gives (``image = "NAME[:TAG]"`` or a digest).

One indirection over the image store (``runtimes.image.store``), so a caller that has its
images elsewhere (a test's hand-made layers) can stand in for it with ``use``.
"""

from __future__ import annotations

from collections.abc import Callable

from runtimes.image.model import Image, ImageError

_finder: Callable[[str], Image] | None = None


def image(ref: str) -> Image:
    """The image ``ref`` names; ``ImageError`` (one line for the user) when there is none."""
    if not isinstance(ref, str) or not ref.strip():
        raise ImageError(f"an image reference must be a non-empty string, got {ref!r}")
    if _finder is not None:
        return _finder(ref)
    # imported here: the store's module (its locks, its layout) is only needed when a scenario names an image
    from runtimes.image import store

    return store.get(ref)


def use(finder: Callable[[str], Image]) -> Callable[[], None]:
    """Resolve references with ``finder`` from now on; returns the function that undoes it."""
    global _finder
    previous, _finder = _finder, finder

    def undo() -> None:
        global _finder
        _finder = previous

    return undo
