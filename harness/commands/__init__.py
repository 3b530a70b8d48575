"""``isobench`` commands that live in their own module: each has ``HELP``, ``add_arguments(parser)``
and ``main(args) -> int``, and is registered by one line in ``harness.cli``'s command table."""
