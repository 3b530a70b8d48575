"""A validation facility, not a measurement: a known change made to stored values so that a
comparison can be checked against it ("the container made 15 % slower at sample level must be
named, and nothing else").

``--inject backend=container,metric=launch_to_ready,factor=1.15`` multiplies the ok values of
that backend's metric in the *new* side's runs as they are loaded; the stored files are never
touched, and every output of the comparison says what was injected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

KEYS = ("backend", "metric", "factor")


@dataclass(frozen=True)
class Injection:
    backend: str
    metric: str
    factor: float

    @classmethod
    def parse(cls, spec: str) -> Injection:
        """``backend=NAME,metric=NAME,factor=X``; a ``UserError`` naming what is wrong."""
        fields: dict[str, str] = {}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in KEYS or not value.strip():
                raise UserError(f"--inject {spec!r}: expected backend=NAME,metric=NAME,factor=X")
            fields[key.strip()] = value.strip()
        missing = [k for k in KEYS if k not in fields]
        if missing:
            raise UserError(f"--inject {spec!r}: missing {', '.join(missing)}")
        try:
            factor = float(fields["factor"])
        except ValueError:
            raise UserError(f"--inject {spec!r}: factor must be a number") from None
        if not (math.isfinite(factor) and factor > 0):
            raise UserError(f"--inject {spec!r}: factor must be a positive number")
        return cls(fields["backend"], fields["metric"], factor)

    def text(self) -> str:
        return f"{self.backend} {self.metric} x{self.factor:g}"

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``df`` with the change made (ok rows of that backend and metric)."""
        hit = (df["backend"] == self.backend) & (df["metric"] == self.metric) & (df["status"] == "ok")
        out = df.copy()
        out.loc[hit, "value"] = out.loc[hit, "value"].astype(float) * self.factor
        return out


def applied(frames: Sequence[pd.DataFrame], injections: Sequence[Injection]) -> list[pd.DataFrame]:
    out = list(frames)
    for inj in injections:
        out = [inj.apply(df) for df in out]
    return out


def notice(injections: Sequence[Injection]) -> str:
    """The line every output of an injected comparison carries."""
    if not injections:
        return ""
    return ("**INJECTED (validation, not measured):** the new side's values of "
            + "; ".join(i.text() for i in injections) + ".")
