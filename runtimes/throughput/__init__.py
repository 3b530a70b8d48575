"""Throughput benchmarks: the tools, the instance's script, and reading what the tools said.

- ``catalog``: each benchmark's tool and fixed arguments (``TOOLS``: what the workload tree adds);
- ``script``: the busybox script an instance runs (a start gate, the benchmarks, the servers);
- ``parse``: the host's verdict on one tool run (exit status, output, duration) -> a rate or a reason.
"""
