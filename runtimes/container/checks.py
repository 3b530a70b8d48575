"""``isobench doctor`` lines of the container: can the seccomp profile be compiled, which kernel
mechanism enforces the device rules here, and does the native zygote build?"""

from __future__ import annotations

from runtimes.declaration import Check


def checks(probe: bool = True) -> list[Check]:
    from runtimes import cgroups
    from runtimes.container.devices import rules as devices
    from runtimes.container.security import caps, seccomp

    out = [_native_zygote(probe)]
    try:
        flt = seccomp.prepare(seccomp.DEFAULT, caps.OCI_DEFAULT)
        assert flt is not None
        out.append(Check("seccomp", True, f"Docker's default profile compiles ({len(flt.bpf) // 8} BPF "
                                          f"instructions, libseccomp via pyseccomp)"))
    except seccomp.SeccompError as e:
        out.append(Check("seccomp", False, str(e), "apt-get install libseccomp2; pip install pyseccomp",
                         essential=False))
    try:
        v = cgroups.version()
    except (OSError, cgroups.CgroupError) as e:
        return out + [Check("device rules", False, f"cgroups unreadable: {e}", essential=False)]
    if v == 2:
        out.append(Check("device rules", True, "cgroup v2: a BPF device program on each container's cgroup"))
    elif devices.DeviceCgroup.hierarchy() is not None:
        out.append(Check("device rules", True, "cgroup v1: the devices controller, below our own cgroup"))
    else:
        out.append(Check("device rules", False, "the cgroup v1 devices controller is not mounted",
                         "mount it (mount -t cgroup -o devices devices /sys/fs/cgroup/devices) or run "
                         "the container with devices=False", essential=False))
    return out


def _native_zygote(probe: bool) -> Check:
    """The C zygote (launcher/zygote.c) needs the system compiler; without it the Python one runs."""
    from runtimes import trust
    from runtimes.container.launcher import native

    fix = "apt-get install gcc libc6-dev"
    try:
        cc = native.compiler()
    except native.NativeUnavailable as e:
        return Check("native zygote", False, f"{e}: containers start from the slower Python zygote",
                     fix, essential=False)
    if not probe:
        return Check("native zygote", True, f"{cc} found (built on the container's first launch)")
    try:
        path = native.build()
    except native.NativeUnavailable as e:
        return Check("native zygote", False, f"{e}: containers start from the slower Python zygote", fix,
                     essential=False)
    except trust.Untrusted as e:
        return Check("native zygote", False, str(e), "make the cache root's alone (chown root, chmod go-w)")
    return Check("native zygote", True, f"built with {cc}: {path}")
