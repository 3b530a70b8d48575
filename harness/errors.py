"""Expected failures: shown as one line, without a traceback (a traceback means a bug)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a missing prerequisite. ``exit_code`` 2, like argparse."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg} (hint: {self.hint})" if self.hint else msg
