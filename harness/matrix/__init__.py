"""The kernel × cgroup-version matrix: the harness itself inside virtme-ng guests.

``kernels``  guest kernels by name (Debian packages fetched into a cache) or path;
``guest``    boot one guest over this machine's filesystem, run a script, own every process;
``accel``    KVM or TCG for those guests, decided by a real boot;
``modes``    the cgroup mode of a cell (v1 hierarchies or delegated v2), as shell lines;
``intests``  this checkout's ``v2host`` tests inside a v2 guest (what CI runs);
``cells``    one (kernel, cgroup mode) cell: ``isobench run`` inside, its run directory outside;
``leftovers`` what ``isobench cleanup`` sweeps; the command is ``harness.commands.matrix``.
"""
