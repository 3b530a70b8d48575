"""What one series is, written once.

A series is every value one backend (on one accelerator) produced for one metric of one case:
the summary table has a row per series, compare tests each series, the report's notes and
labels name one.  They all key it by :class:`SeriesKey`; rows are grouped into series by
:func:`groups` only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import runtimes
from harness.stats import is_missing

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: the columns of a row (and of the summary table) that identify its series, besides its params
COLUMNS = ("backend", "accel", "measurement", "workload", "metric", "unit")
#: the column in which each row stores its case (``Case.id``: measurement, workload, grid values)
CASE = "case"
#: the accelerator whose figures are emulated: every label of its series says so
EMULATED = "tcg"
EMULATED_WORDS = "TCG, emulated"

Params = tuple[tuple[str, Any], ...]


def norm(v: Any) -> Any:
    """A key value as compared: missing is None, and 100.0 is 100 (a column with gaps turns
    ints into floats; the two are one case)."""
    if is_missing(v):
        return None
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def accel_words(backend: Any, accel: Any) -> str | None:
    """The words every figure of ``backend`` on ``accel`` carries: "TCG, emulated" for an emulated
    guest, the backend's declared words for its platform (``Declaration.accel_labels``: gVisor's
    ptrace or KVM platform), else none (a guest on KVM is the ordinary case)."""
    if is_missing(accel):
        return None
    if accel == EMULATED:
        return EMULATED_WORDS
    name = str(backend)
    return runtimes.declaration(name).accel_labels.get(str(accel)) if runtimes.known(name) else None


def label(backend: Any, accel: Any = None, split: Any = None, how: str | None = None) -> str:
    """The series as the report names it: ``vm (TCG, emulated) @ host-b``,
    ``oci:runsc (gVisor ptrace platform)``; ``how`` says how the backend ran an image where its
    name does not (``bare (chroot)``)."""
    text = str(backend) + (f" ({how})" if how else "")
    words = accel_words(backend, accel)
    if words:
        text += f" ({words})"
    if not is_missing(split):
        text += f" @ {split}"
    return text


class SeriesKey(NamedTuple):
    """The identity of a series.  ``split`` tells apart the same series of runs from different
    hosts or kernels merged into one report (None within one run and in compare)."""

    backend: str
    accel: str | None
    measurement: str
    workload: str
    metric: str
    unit: str
    params: Params = ()
    split: Any = None

    @classmethod
    def of(cls, row: Mapping[str, Any] | Any, param_cols: Sequence[str] = (), split: bool = False) -> SeriesKey:
        """The key of a row (a mapping or a pandas row) whose ``param_*`` columns are ``param_cols``;
        missing params are left out, so tables with different param columns agree on a series."""
        params = tuple((c.removeprefix("param_"), norm(row[c])) for c in param_cols if not is_missing(row[c]))
        b, a, m, w, met, u = (norm(row[c]) for c in COLUMNS)
        return cls(str(b), a, str(m), str(w), str(met), str(u), params, norm(row["split"]) if split else None)

    @property
    def params_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params)

    def label(self) -> str:
        return label(self.backend, self.accel, self.split)

    def text(self) -> str:
        """A stable text form (the keys of a noise file): ``container|startup|noop|launch_to_ready|ms|``;
        the accelerator, where there is one, as ``vm@kvm``."""
        backend = self.backend if self.accel is None else f"{self.backend}@{self.accel}"
        return "|".join([backend, self.measurement, self.workload, self.metric, self.unit, self.params_text])

    def fields(self) -> dict[str, Any]:
        """backend, measurement, workload, metric, unit and params (as text): what a table shows."""
        return {"backend": self.backend, "measurement": self.measurement, "workload": self.workload,
                "metric": self.metric, "unit": self.unit, "params": self.params_text}


def param_columns(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if c.startswith("param_"))


def case_columns(df: pd.DataFrame) -> list[str]:
    """What tells one case's rows from another's: every ``param_*`` (the case's grid values, and a
    point's own, such as density's ``instances``), then the stored ``case`` itself — last, so that
    series sort by their params' values."""
    return [*param_columns(df), CASE]


def groups(df: pd.DataFrame, split: bool = False) -> Iterator[tuple[SeriesKey, dict[str, Any], pd.DataFrame]]:
    """Each series' key, the raw values of its key columns (``COLUMNS``, ``split``, every
    ``param_*``, the stored ``case``; missing columns read as None) and its rows, in the order of
    those values."""
    pcols = param_columns(df)
    keys = [*COLUMNS, *(["split"] if split else []), *case_columns(df)]
    missing = [k for k in keys if k not in df.columns]
    if missing:
        df = df.assign(**{k: None for k in missing})
    for values, g in df.groupby(keys, dropna=False, sort=True):
        raw = dict(zip(keys, values, strict=True))
        yield SeriesKey.of(raw, pcols, split), raw, g
