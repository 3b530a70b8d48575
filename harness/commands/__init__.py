"""The ``isobench`` commands, one module each.

Every module here has the same three names, and ``harness.cli.COMMANDS`` lists
it by one line (the order there is the order of ``isobench --help``)::

    HELP: str                                  # the one line of ``isobench --help``
    def add_arguments(parser) -> None: ...     # its options, on an argparse sub-parser
    def main(args) -> int: ...                 # the exit status

A command module parses and prints; the work is done by library modules
(``harness.runner``, ``harness.compare``, ``harness.report`` …), which know
nothing of argparse.  Import heavy libraries (pandas, matplotlib, libvirt)
inside ``main``, so ``isobench --help`` and bad-input errors stay fast, and
``isobench doctor`` runs under the system Python (standard library only).
"""
