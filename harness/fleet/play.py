"""Run one of the fleet's playbooks with ansible-runner, feeding its events to a callback.

ansible-runner starts ``ansible-playbook`` in a pseudo-terminal of its own
session and hands every event (a task starting on a host, its result, an
unreachable host) to ``on_event`` as it happens.  Everything Ansible would keep
in root's home (``~/.ansible``: temporary files, SSH control sockets) lives in
the caller's private directory instead, and the SSH connections Ansible leaves
open for reuse (ControlPersist) are closed before ``run`` returns, so a fleet
leaves no ``ssh`` process behind.  ``ansible-playbook`` gets
``PR_SET_PDEATHSIG``: if isobench is killed, so is it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
#: where a fleet's private directory goes, whatever TMPDIR says: SSH's control sockets live in it,
#: and a Unix socket's path has 107 bytes at most (nox's TMPDIR, .nox/SESSION/tmp, is too deep)
PRIVATE_ROOT = Path("/tmp")
EXTRA = "pip install 'isobench[fleet]' (ansible-core and ansible-runner)"


def tool(name: str) -> str:
    """An Ansible command beside this Python (a venv's bin) or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise UserError(f"fleet: {name} is not installed", hint=EXTRA)
    return found


def environment(private: Path | None = None) -> dict[str, str]:
    """Ansible's settings for a fleet: nothing in root's home, no colours, quiet about Python."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update({
        "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_PIPELINING": "1",  # one SSH round trip per module instead of three
        "ANSIBLE_GATHERING": "explicit", "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_TIMEOUT": env.get("ANSIBLE_TIMEOUT", "30"),  # an emulated guest answers slowly
        # ansible-runner turns host-key checking off unless told otherwise: a lab's known_hosts
        # (or the user's own setting) decides, as with ansible-playbook itself
        "ANSIBLE_HOST_KEY_CHECKING": env.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    })
    if private is not None:
        env.update({"ANSIBLE_HOME": str(private / "home"), "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
                    "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir(private))})
    return env


def control_dir(private: Path) -> Path:
    return private / "cp"


@dataclass(frozen=True)
class Play:
    """One ``ansible-playbook`` invocation."""

    playbook: str  # a file in PLAYBOOKS
    inventory: Path
    extravars: Mapping[str, Any]
    hosts: tuple[str, ...]  # exactly these (a limit file: any host name is safe)
    forks: int = 5
    verbosity: int = 0


def _pdeathsig_wrapper(private: Path) -> Path:
    """A directory whose ``ansible-playbook`` starts the real one through setpriv(1) with
    PR_SET_PDEATHSIG=KILL (ansible-runner finds it first on PATH)."""
    bin_dir = private / "bin"
    bin_dir.mkdir(exist_ok=True)
    target = tool("ansible-playbook")
    setpriv = shutil.which("setpriv")
    prefix = f"exec {setpriv} --pdeathsig KILL -- " if setpriv else "exec "
    wrapper = bin_dir / "ansible-playbook"
    wrapper.write_text(f'#!/bin/sh\n{prefix}"{target}" "$@"\n')
    wrapper.chmod(0o700)
    return bin_dir


def run(play: Play, private: Path, on_event: Callable[[dict[str, Any]], None],
        cancelled: Callable[[], bool], log: Path) -> int:
    """Run ``play``; ``cancelled()`` is polled (a True kills ansible-playbook). Its exit status."""
    try:
        import ansible_runner
    except ImportError as e:
        raise UserError("fleet: ansible-runner is not installed", hint=EXTRA) from e
    for d in ("home", "tmp", "cp"):
        (private / d).mkdir(parents=True, exist_ok=True)
    limit = private / f"{Path(play.playbook).stem}.hosts"
    limit.write_text("".join(f"{h}\n" for h in play.hosts))

    def handler(event: dict[str, Any]) -> bool:
        on_event(event)
        return True

    env = environment(private)
    env["PATH"] = f"{_pdeathsig_wrapper(private)}:{env['PATH']}"
    try:
        r = ansible_runner.run(
            private_data_dir=str(private), playbook=str(PLAYBOOKS / play.playbook),
            inventory=str(play.inventory.resolve()), extravars=dict(play.extravars), limit=f"@{limit}",
            forks=play.forks, verbosity=play.verbosity or None,
            envvars=env, event_handler=handler, cancel_callback=cancelled,
            quiet=True, settings={"pexpect_timeout": 0.5},
            ident=Path(play.playbook).stem)
        rc = int(r.rc if r.rc is not None else 1)
        _keep_stdout(private / "artifacts" / Path(play.playbook).stem / "stdout", log)
    finally:
        close_connections(private)
    return rc


def _keep_stdout(stdout: Path, log: Path) -> None:
    """Ansible's own account of the play, appended to the fleet's log."""
    try:
        text = stdout.read_text(errors="replace")
    except OSError:
        return
    with open(log, "a") as fh:
        fh.write(text)


def close_connections(private: Path) -> None:
    """Tell every SSH master Ansible left (ControlPersist) to exit now."""
    cp = control_dir(private)
    if not cp.is_dir():
        return
    for sock in cp.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "isobench-fleet"],
                       capture_output=True, timeout=10, check=False)
