"""The launcher: how a container's PID 1 is made.

``zygote`` (host side) starts and talks to a small helper that forks each init:
the native one (``zygote.c``, built by ``native``; requests encoded by ``wire``)
or the Python one (``zygote_server``).  ``template`` prepares the part of the
mount plan every container shares, once per zygote; ``init`` is the child side
in Python (the fork launcher's and the Python zygote's) and the host side of
the status pipe every launcher reports on.
"""
