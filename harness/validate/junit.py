"""JUnit XML for CI: one testcase per check (violations and missing cases are failures)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.validate.checks import Check


def junit(checks: list[Check], suite: str = "isobench validate") -> ET.ElementTree:
    failures = sum(c.failed for c in checks)
    skipped = sum(c.outcome == "skipped" for c in checks)
    root = ET.Element("testsuites", name=suite, tests=str(len(checks)), failures=str(failures))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(checks)), failures=str(failures),
                       errors="0", skipped=str(skipped))
    for c in checks:
        tc = ET.SubElement(ts, "testcase", classname=c.classname, name=c.name)
        if c.outcome == "fail":
            ET.SubElement(tc, "failure", message=c.message, type="violation").text = c.message
        elif c.outcome == "missing":
            ET.SubElement(tc, "failure", message=c.message, type="missing").text = c.message
        elif c.outcome == "skipped":
            ET.SubElement(tc, "skipped", message=c.message)
    ET.indent(root)
    return ET.ElementTree(root)
