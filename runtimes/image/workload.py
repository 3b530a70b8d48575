"""A workload made of an image: the ``[workload.NAME]`` table of a scenario.

    [workload.web]
    image = "pyhttp"                  # an imported image (``isobench image ls``)
    command = ["python3", "-m", "http.server"]   # optional: replaces the image's Entrypoint
    args = ["8000"]                   # optional: replaces the image's Cmd
    env = { GREETING = "hi" }         # over the image's Env
    workdir = "/srv"                  # default: the image's WorkingDir
    user = "nobody"                   # default: the image's User
    ready = { http = "8000/" }        # "exit" | {log = "REGEX"} | {tcp = PORT} | {http = "PORT/PATH"};
                                      # default: the image's label org.isobench.ready, else "exit"
    stop = "SIGTERM"                  # default: the image's StopSignal, else SIGTERM
    grace = 5                         # seconds between the stop signal and SIGKILL

``command``/``args`` follow Kubernetes: ``command`` replaces the Entrypoint and, given alone,
drops the Cmd too; ``args`` replaces the Cmd.  Everything is resolved here, once, into a
``ProcessSpec`` (argv, env, cwd, uid/gid/groups), so every backend -- and a guest's init --
starts the very same process.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runtimes.image import layers as image_layers
from runtimes.image import resolve
from runtimes.image import user as image_user
from runtimes.image.model import Image
from runtimes.image.rundir import MOUNTPOINTS
from runtimes.workload_kinds import Kind, TableError
from runtimes.workloads import ProcessSpec, Ready

#: Docker's PATH when the image's Env has none
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: the image label that says how the image is ready ("http 8000/"), when a scenario does not
#: (the example images carry it: runtimes.image.examples)
READY_LABEL = "org.isobench.ready"
#: seconds between the stop signal and SIGKILL when the scenario does not say
DEFAULT_GRACE_S = 5.0


def signal_number(name: str | int) -> int:
    """``"SIGTERM"``, ``"TERM"``, ``"15"`` or 15 -> 15; ValueError otherwise."""
    if isinstance(name, int) and not isinstance(name, bool):
        number = name
    elif isinstance(name, str) and name.strip().isdigit():
        number = int(name)
    elif isinstance(name, str):
        key = name.strip().upper()
        key = key if key.startswith("SIG") else f"SIG{key}"
        try:
            return int(signal.Signals[key])
        except KeyError:
            raise ValueError(f"unknown signal {name!r}") from None
    else:
        raise ValueError(f"a signal must be a name or a number, got {name!r}")
    if number not in {int(s) for s in signal.valid_signals()}:
        raise ValueError(f"unknown signal {name!r}")
    return number


@dataclass(frozen=True)
class ImageWorkload:
    """An image's process with a scenario's overrides; ``process`` is what every backend runs."""

    name: str
    image: Image
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    ready: Ready = Ready("exit")
    stop: str | int | None = None
    grace_s: float = DEFAULT_GRACE_S
    kind: ClassVar[str] = "image"
    #: no catalog parameters (a measurement that scales one, e.g. mem_limit's mib, cannot)
    params: ClassVar[Mapping[str, Any]] = {}

    def __post_init__(self) -> None:
        if self.ready.kind == "marker":
            raise ValueError("an image workload has no ready marker: use exit, log, tcp or http")
        if not self.argv():
            raise ValueError(f"image {self.image.name} has no Entrypoint or Cmd: give command")
        workdir = self.cwd()
        if not workdir.startswith("/"):
            raise ValueError(f"workdir must be an absolute path, got {workdir!r}")
        if not 0 <= self.grace_s <= 3600:
            raise ValueError(f"grace must be between 0 and 3600 seconds, got {self.grace_s!r}")
        ids = image_user.resolve(self.image.layers, self.user if self.user is not None else self.image.config.user)
        env = {"PATH": DEFAULT_PATH, **self.image.config.env, **self.env}
        if ids.home and "HOME" not in env:
            env["HOME"] = ids.home
        # computed once: frozen, so kept with object.__setattr__
        object.__setattr__(self, "_process", ProcessSpec(tuple(self.argv()), env, workdir, ids.uid, ids.gid, ids.groups))
        object.__setattr__(self, "_signal", signal_number(self.stop if self.stop is not None
                                                         else self.image.config.stop_signal or "SIGTERM"))
        object.__setattr__(self, "_mountpoints", tuple(
            d for d in MOUNTPOINTS if not image_layers.exists(self.image.layers, d)))

    def argv(self) -> list[str]:
        """Entrypoint + Cmd, with ``command`` replacing the Entrypoint (and the Cmd, given alone)
        and ``args`` replacing the Cmd."""
        cfg = self.image.config
        entry = self.command if self.command is not None else cfg.entrypoint
        if self.args is not None:
            rest = self.args
        else:
            rest = () if self.command is not None else cfg.cmd
        return [*entry, *rest]

    def cwd(self) -> str:
        return self.workdir or self.image.config.workdir or "/"

    @property
    def process(self) -> ProcessSpec:
        spec: ProcessSpec = self.__dict__["_process"]
        return spec

    @property
    def stop_signal(self) -> int:
        number: int = self.__dict__["_signal"]
        return number

    @property
    def stop_grace_s(self) -> float:
        return float(self.grace_s)

    @property
    def exits_by_itself(self) -> bool:
        return self.ready.kind == "exit"

    def bound(self) -> dict[str, Any]:
        return {}

    @property
    def tools(self) -> Mapping[str, str]:
        """Programs beyond the base workload tree's: an image brings its own."""
        return {}

    def missing_mountpoints(self) -> tuple[str, ...]:
        """The directories of ``MOUNTPOINTS`` the image lacks (made in each instance's upper;
        looked up once, when the workload was defined)."""
        found: tuple[str, ...] = self.__dict__["_mountpoints"]
        return found

    def describe(self) -> dict[str, Any]:
        """What the manifest records: the image's identity and the process it runs."""
        p = self.process
        return {"kind": self.kind, "name": self.name, "image": self.image.name, "digest": self.image.digest,
                "config_digest": self.image.config_digest, "layers": list(self.image.diff_ids),
                "argv": list(p.argv), "cwd": p.cwd, "uid": p.uid, "gid": p.gid, "groups": list(p.groups),
                "env": sorted(p.env), "ready": self.ready.describe(),
                "stop": signal.Signals(self.stop_signal).name, "grace_s": self.stop_grace_s}


def from_table(name: str, table: Mapping[str, Any], image: Image) -> ImageWorkload:
    """The workload a scenario's ``[workload.NAME]`` table describes; ValueError naming the key."""
    def strings(key: str) -> tuple[str, ...] | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(
                isinstance(v, str) for v in value):
            raise ValueError(f"{key} must be a list of strings, got {value!r}")
        return tuple(value)

    env = table.get("env", {})
    if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k
                                               for k, v in env.items()):
        raise ValueError(f"env must be a table of strings (names without '='), got {env!r}")
    for key in ("workdir", "user"):
        if key in table and not isinstance(table[key], str):
            raise ValueError(f"{key} must be a string, got {table[key]!r}")
    stop = table.get("stop")
    if stop is not None and not isinstance(stop, (str, int)):
        raise ValueError(f"stop must be a signal name or number, got {stop!r}")
    grace = table.get("grace", DEFAULT_GRACE_S)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)):
        raise ValueError(f"grace must be a number of seconds, got {grace!r}")
    try:  # default: what the image says of itself (the example images' label), else its exit
        label = image.config.labels.get(READY_LABEL)
        ready = Ready.parse(table["ready"]) if "ready" in table else Ready.from_words(label or "exit")
    except ValueError as e:
        raise ValueError(f"ready: {e}") from e
    return ImageWorkload(name, image, strings("command"), strings("args"), dict(env), table.get("workdir"),
                         table.get("user"), ready, stop, float(grace))


def load(name: str, table: Mapping[str, Any]) -> ImageWorkload:
    """A ``[workload.NAME]`` table of the image kind: its image looked up in the store now."""
    if not isinstance(table.get("image"), str):
        raise TableError("image", "must name an imported image (isobench image ls)")
    return from_table(name, table, resolve.image(table["image"]))


#: the image kind of ``[workload.NAME]`` table (``runtimes.workload_kinds``)
KIND = Kind("image", frozenset({"image", "command", "args", "env", "workdir", "user", "ready", "stop", "grace"}),
            load)
