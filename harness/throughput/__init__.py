"""The throughput measurement's machinery: one sample (``session``), and its report (``figure``,
``felter``).  The tools, the instance's script and the verdict on each tool run are in
``runtimes.throughput``; the measurement's declaration is ``harness.measure.throughput``.
"""
