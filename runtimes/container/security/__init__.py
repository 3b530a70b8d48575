"""What cuts a container's root down to an OCI engine's default (runc/crun parity).

``caps``: the capability set and no_new_privs; ``seccomp``: Docker's profile
(``profiles/``), resolved, compiled and loaded; ``seccomp_schema``: the check of
a profile's shape; ``hardening``: rlimits, oom_score_adj, the session keyring.
"""
