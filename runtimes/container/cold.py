"""``container:cold``: the built-in container with its launch helper started inside every launch."""

from __future__ import annotations

from runtimes.container.backend import ContainerBackend


class ColdContainerBackend(ContainerBackend):
    """``container:cold``: the same runtime, the zygote started anew inside every launch.

    Its launch→ready is the cold figure (helper start included, phase ``helper_start``)
    beside ``container``'s warm one, measured in the same run.
    """

    name = "container:cold"
    cold = True
