"""The soak: thousands of launches in one run, and what the harness, its helpers and the kernel
hold along the way (``procfs``), so that a leak shows as a slope.  ``docs/reliability.md``."""
