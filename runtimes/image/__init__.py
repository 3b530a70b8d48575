"""OCI images as isobench runs them: immutable layers, unpacked once, mounted (never flattened).

``model`` is the contract the rest of the project uses (an :class:`~runtimes.image.model.Image`
is its ordered layer directories plus its runtime configuration); the store that imports
images into the cache and hands out ``Image`` objects lives beside it.
"""

from runtimes.image.model import Image, ImageConfig, ImageError

__all__ = ["Image", "ImageConfig", "ImageError"]
