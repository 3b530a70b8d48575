"""What happened on each host, read from Ansible's events as they arrive (pure: unit-tested).

The playbook names every task ``STEP: what`` (``stage``, ``doctor``, ``python``,
``run``, ``pack``, ``fetch``, ``cleanup``), so an event says which step of which
host started, succeeded, failed or found the host unreachable.  The first
failure of a host is its reason, in the host's own words where there are some
(``isobench: error: …`` from the harness, the last lines of stderr, Ansible's
message).  Each finished task's output and duration go to the host's log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STEPS = ("stage", "doctor", "python", "run", "pack", "fetch", "cleanup")
_REASON_CHARS = 400


@dataclass
class HostProgress:
    step: str = ""  # the step running (or last run)
    failed_step: str | None = None
    reason: str = ""
    fetched: bool = False
    cleanup: str = ""  # what the cleanup step said (its last line), or why it failed
    cleanup_ok: bool | None = None
    log: list[str] = field(default_factory=list)  # each finished task's output, for logs/<host>.log


def step_of(task: str) -> str:
    head = task.partition(":")[0].strip()
    return head if head in STEPS else ""


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value) if value not in (None, "") else ""


def _noise(line: str) -> bool:
    return line.startswith(("Shared connection to ", "Warning: Permanently added")) or not line.strip()


def summarise(res: dict[str, Any]) -> str:
    """One line from a failed task's result: the harness's error, else stderr's end, else Ansible's msg."""
    out = [ln for ln in (_text(res.get("stderr")) + "\n" + _text(res.get("stdout"))).splitlines()
           if not _noise(ln)]
    said = [ln.strip() for ln in out if ln.strip().startswith("isobench: error:")]
    msg = " | ".join(ln.strip() for ln in _text(res.get("msg")).splitlines() if ln.strip())
    rc = res.get("rc")
    if said:
        words = said[-1]
    elif out:
        words = " | ".join(ln.strip() for ln in out[-3:])
    else:
        words = msg or "failed"
    if rc not in (None, 0) and not words.startswith("exit"):
        words = f"exit {rc}: {words}"
    return words[:_REASON_CHARS]


class Tracker:
    """Per-host progress; ``feed`` returns a line worth printing, or None."""

    def __init__(self, hosts: list[str]):
        self.hosts: dict[str, HostProgress] = {h: HostProgress() for h in hosts}

    def feed(self, event: dict[str, Any]) -> str | None:
        kind = str(event.get("event", ""))
        data = event.get("event_data") or {}
        host = data.get("host")
        if host not in self.hosts:
            return None
        p = self.hosts[host]
        step = step_of(str(data.get("task", "")))
        raw = data.get("res")
        res: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if kind == "runner_on_start":
            if step and step != p.step:
                p.step = step
                return f"{host}: {step}…"
            return None
        if kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            self._log(p, data.get("task", ""), kind, res, data.get("duration"))
        if kind == "runner_on_skipped" and step:
            return f"{host}: {step}: skipped (its condition is not met: e.g. isobench_python is set)"
        if kind == "runner_on_ok":
            return self._ok(host, p, step, res)
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            return self._failed(host, p, step or p.step, summarise(res))
        if kind == "runner_on_unreachable":
            msg = " | ".join(ln.strip() for ln in _text(res.get("msg")).splitlines() if ln.strip()).splitlines()
            return self._failed(host, p, step or p.step, "unreachable: " + (msg[-1] if msg else "no answer"))
        return None

    def _ok(self, host: str, p: HostProgress, step: str, res: dict[str, Any]) -> str | None:
        if step == "fetch":
            p.fetched = True
            return None  # the caller unpacks it and says so
        if step == "cleanup":
            lines = [ln for ln in _text(res.get("stdout")).splitlines() if not _noise(ln)]
            p.cleanup, p.cleanup_ok = (lines[-1].strip() if lines else "done"), True
            return f"{host}: cleanup: {p.cleanup}"
        return None

    def _failed(self, host: str, p: HostProgress, step: str, reason: str) -> str:
        if step == "cleanup":
            p.cleanup, p.cleanup_ok = reason, False
            return f"{host}: cleanup FAILED: {reason}"
        if p.failed_step is None:
            p.failed_step, p.reason = step or "?", reason
        return f"{host}: {step or '?'} FAILED: {reason}"

    @staticmethod
    def _log(p: HostProgress, task: str, kind: str, res: dict[str, Any], seconds: Any) -> None:
        took = f", {float(seconds):.1f} s" if isinstance(seconds, (int, float)) else ""
        parts = [f"== {task} ({kind.removeprefix('runner_on_')}{took})"]
        for key in ("cmd", "rc", "msg", "stdout", "stderr"):
            text = _text(res.get(key)).rstrip()
            if text:
                parts.append(f"-- {key}:\n{text}" if "\n" in text else f"-- {key}: {text}")
        p.log.append("\n".join(parts) + "\n")
