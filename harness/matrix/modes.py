"""The cgroup mode of a guest cell, set up by a few shell lines before the harness starts.

A virtme-ng guest boots with pure cgroup v2 mounted at ``/sys/fs/cgroup`` and
every process in the root cgroup.  The harness must never create cgroups above
its own, and on v2 can only hand controllers down from a cgroup it is alone
in, so:

* **v2**: enable cpu/memory/pids (and what else the kernel offers) at the root
  and move the shell into ``/sys/fs/cgroup/isobench-guest`` before it
  ``exec``s the command (what ``systemd-run --scope -p Delegate=yes`` does on
  a host).  The harness then delegates further below itself.
* **v1**: unmount the cgroup2 tree (nothing uses it yet, so its controllers
  are free), mount a tmpfs there and one v1 hierarchy per controller, as on a
  v1 host, plus cgroup2 at ``unified`` (hybrid, like this project's CI host).
  A controller the kernel cannot mount on v1 (6.12 has CONFIG_MEMCG_V1 off)
  is reported on stderr as ``isobench-guest: v1 NAME: not available`` and in
  ``guest-cgroup.txt``; the harness then refuses samples that need it, with
  that reason.

Shell, not Python: a Python start costs seconds inside an emulated guest.  The mounts carry
the usual names (cgroup, cgroup2), not ``isobench``: they belong to the guest, and the
harness inside must not take them for its own leftovers.
"""

from __future__ import annotations

import shlex

MODES = ("v1", "v2")
SCOPE = "isobench-guest"
#: v1 hierarchies mounted in a v1 cell (mount option -> directory name)
V1_HIERARCHIES = (("cpu,cpuacct", "cpu,cpuacct"), ("memory", "memory"), ("pids", "pids"),
                  ("cpuset", "cpuset"), ("freezer", "freezer"), ("blkio", "blkio"), ("devices", "devices"))
#: v1 symlinks a v1 host has (cpu -> cpu,cpuacct)
V1_LINKS = (("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct"))


def prelude(mode: str, report: str | None = None, scope: bool = True) -> str:
    """Shell lines that put the guest into ``mode``; ``report``: a file that lists what mounted.

    ``scope=False`` (v2): the shell stays in the root cgroup, where processes may sit beside
    enabled controllers; each command it starts later moves itself into a child of its own
    (the fleet lab's sshd, whose sessions run the harness: ``harness/fleet/playbooks/run.sh``)."""
    if mode not in MODES:
        raise ValueError(f"cgroup mode {mode!r}: one of {', '.join(MODES)}")
    out = shlex.quote(report) if report else "/dev/null"
    if mode == "v2":
        return _V2.format(scope=SCOPE, out=out) + (_V2_SCOPE.format(scope=SCOPE) if scope else "")
    mounts = "\n".join(
        f"mkdir -p $cg/{d} && if mount -t cgroup -o {o} cgroup $cg/{d} 2>/dev/null; "
        f"then echo 'v1 {o}: mounted' >> {out}; "
        f"else rmdir $cg/{d}; echo 'v1 {o}: not available' >> {out}; "
        f"echo 'isobench-guest: v1 {o}: not available' >&2; fi"
        for o, d in V1_HIERARCHIES)
    links = "\n".join(f"[ -d $cg/{t} ] && ln -s {t} $cg/{n}" for n, t in V1_LINKS)
    return _V1.format(mounts=mounts, links=links, out=out)


_V2 = """cg=/sys/fs/cgroup
echo 'cgroup v2' > {out}
for c in $(cat $cg/cgroup.controllers); do echo "+$c" > $cg/cgroup.subtree_control 2>/dev/null; done
echo "delegated: $(cat $cg/cgroup.subtree_control)" >> {out}
"""
_V2_SCOPE = """mkdir -p $cg/{scope} && echo $$ > $cg/{scope}/cgroup.procs
"""

_V1 = """cg=/sys/fs/cgroup
echo 'cgroup v1' > {out}
umount $cg && mount -t tmpfs -o mode=755 cgroup_root $cg
{mounts}
{links}
mkdir -p $cg/unified && mount -t cgroup2 cgroup2 $cg/unified
"""
