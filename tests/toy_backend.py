"""A test-only backend: the whole of what adding a backend takes (this module plus one
``runtimes.register(DECLARATION)``, or one line in ``runtimes.REGISTRY``).

It runs the workload as a host process, like the reference backend, under another
name, with one typed option and a ``prepare()`` that records when it ran.
"""

from __future__ import annotations

from typing import Any

from runtimes.bare import BareBackend
from runtimes.base import Instance, LaunchSpec
from runtimes.declaration import Declaration, Option

#: what happened, in order: ("prepare", None) and ("launch", instance name)
EVENTS: list[tuple[str, str | None]] = []


class ToyBackend(BareBackend):
    name = "toy"

    def prepare(self) -> None:
        EVENTS.append(("prepare", None))

    def launch(self, spec: LaunchSpec) -> Instance:
        EVENTS.append(("launch", spec.instance))
        assert spec.extra.get("flavour") in ("plain", "spicy"), spec.extra  # the typed option arrived
        return super().launch(spec)

    def metadata(self) -> dict[str, Any]:
        return {"toy": True}


DECLARATION = Declaration(
    name="toy",
    factory="tests.toy_backend:ToyBackend",
    label="a test-only backend",
    colour="#123456",
    options=(Option("flavour", str, "plain", help="an option only the toy has"),),
    peer_of="bare",
)
