"""Which devices a container may use, enforced by the kernel.

``rules``: runc's default allowlist, and the v1 devices cgroup that holds it;
``bpf``: the same rules as a cgroup v2 BPF device program; ``guard``: puts them
on an instance (one shared v1 cgroup per backend, or the program on its cgroup).
"""
