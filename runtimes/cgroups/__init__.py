"""cgroups v1 and v2 behind one small interface.

Every cgroup isobench makes is created *below the cgroup this process is in*
(``/proc/self/cgroup``), in each hierarchy it needs, and carries ``isobench`` in
its name.  A process is never moved upward or out of that sub-tree: this is
what a delegated sub-tree (systemd ``Delegate=yes``, a CI sandbox) allows.

    cg = Cgroup.create("isobench-r1-0", Limits(cpu_quota=0.5))
    cg.attach(pid)            # or, on v2, clone straight into cg.dir_fd()
    cg.usage()                # {"cpu_usage_ns": ..., "cpu_nr_throttled": ...}
    cg.remove()               # kills what is left (sub-cgroups too), then rmdir; idempotent

    Cgroup.wrap(name, {"": Path(...)})   # a cgroup someone else made (an OCI runtime's)

The package:

``parse``   mountinfo and /proc/<pid>/cgroup, as pure functions of text;
``files``   reading and writing control files, ``CgroupError``;
``host``    this host's hierarchies, our own cgroup, the version, the v2 delegation,
            where our cgroups go, the leftover sweep;
``v1``/``v2`` what differs per version: applying limits, reading counters;
``tree``    a cgroup and its sub-cgroups: processes, kill (``cgroup.kill`` on v2),
            removal deepest-first;
``cgroup``  the per-instance ``Cgroup``.
"""

from __future__ import annotations

from runtimes.cgroups.cgroup import Cgroup, validate_limits
from runtimes.cgroups.files import CgroupError, join_self, parse_kv, read_kv
from runtimes.cgroups.host import (
    CGROUP_ROOT,
    HARNESS_LEAF,
    V1_CONTROLLERS,
    V2_CONTROLLERS,
    Hierarchy,
    describe,
    dirs_for,
    find_leftovers,
    hierarchies,
    host_dir,
    mounts,
    own_paths,
    parent_dirs,
    prepare,
    process_paths,
    remove_dir,
    v1_mounts,
    v2_base,
    v2_mount,
    version,
)
from runtimes.cgroups.parse import Membership, Mount, parse_mountinfo, parse_proc_cgroup, paths_by_controller
from runtimes.naming import PREFIX

__all__ = [
    "CGROUP_ROOT", "HARNESS_LEAF", "PREFIX", "V1_CONTROLLERS", "V2_CONTROLLERS",
    "Cgroup", "CgroupError", "Hierarchy", "Membership", "Mount",
    "describe", "dirs_for", "find_leftovers", "hierarchies", "host_dir", "join_self", "mounts", "own_paths",
    "parent_dirs", "parse_kv", "parse_mountinfo", "parse_proc_cgroup", "paths_by_controller", "prepare",
    "process_paths", "read_kv", "remove_dir", "v1_mounts", "v2_base", "v2_mount", "validate_limits", "version",
]
