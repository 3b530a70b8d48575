"""``python -m harness.store RUN_DIR``: store the log's new lines (what a run's writer hands off).

Its own process, so the process that measures never imports pyarrow (``harness.results``).
Prints nothing on success; one line and exit 2 when the store cannot be written (the run's
log keeps every sample: ``isobench results convert`` tries again).
"""

from __future__ import annotations

import sys

from harness.store.convert import update
from harness.store.segments import StoreError


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m harness.store RUN_DIR", file=sys.stderr)
        return 2
    try:
        update(argv[0])
    except (OSError, StoreError) as e:
        print(f"isobench: store of {argv[0]} not written: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
