"""Page-cache sharing along density's ramp: what N instances of one image add to the page cache.

An image's layers are the lowerdirs of every instance's overlay, and overlayfs reads a lower
file through the layer file's own page cache: N instances should hold the image's file pages
**once**.  Three readings, each at every point of density's ramp (and of its control ramp,
which launches nothing, for the first), each with its interval and method:

- ``cached``: the host's ``Cached`` (/proc/meminfo, read right after MemAvailable settled):
  the page cache the whole host holds; its Theil–Sen slope is what each added instance adds;
- ``image_resident`` (image workloads): ``mincore`` over every regular file of the image's
  layers (``runtimes.image.pagecache``): the image's own pages in the page cache, whoever
  read them; its slope per instance is ~0 when they are shared, its value with all instances
  held is the image's pages, once;
- ``file_charge``: the page cache charged to each instance's own cgroup (``memory.stat``
  ``cache`` on v1, ``file`` on v2): a page is charged to the cgroup that first read it, so
  the first instance carries the image's pages (when no earlier launch brought them in) and
  the others only what they wrote or read alone;
- guests: their host files are the layer disks (``Backend.image_files``), which
  ``image_resident`` then reads, and ``guest_cache``: the file pages each guest holds in its
  *own* page cache (Cached − Shmem of its meminfo, asked with all held) -- once per guest.

The slopes are pooled over the case's ramps as density's own are (``density.pooled_fit``);
a figure whose interval is wider than itself is "not resolved" (``Slope.resolved``).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.measure import accounting
from harness.measure.common import MIB, Rows, guest_report, reported
from harness.metric import LOWER, NONE, Metric, declare

if TYPE_CHECKING:  # pragma: no cover
    from runtimes.base import Instance
    from runtimes.image.model import Image

declare(
    Metric("cached", "MiB", NONE, "density", summarised=False,
           description="the host's Cached (/proc/meminfo) with `instances` instances held"),
    Metric("cached_control", "MiB", NONE, "density", summarised=False,
           description="Cached at step `instances` of the control ramp"),
    Metric("cached_slope", "MiB/instance", LOWER, "density",
           description="Theil–Sen slope of Cached along one ramp: page cache added per instance"),
    Metric("cached_slope_lo", "MiB/instance", NONE, "density", description="95 % interval of that slope"),
    Metric("cached_slope_hi", "MiB/instance", NONE, "density", description="95 % interval of that slope"),
    Metric("cached_pooled", "MiB/instance", LOWER, "density",
           description="the Cached slope of every ramp of the case pooled (last repetition)"),
    Metric("cached_pooled_lo", "MiB/instance", NONE, "density", description="its 95 % interval"),
    Metric("cached_pooled_hi", "MiB/instance", NONE, "density", description="its 95 % interval"),
    Metric("image_resident", "MiB", NONE, "density", summarised=False,
           description="the image's layer files' pages in the page cache (mincore) with `instances` held"),
    Metric("image_resident_slope", "MiB/instance", LOWER, "density",
           description="Theil–Sen slope of image_resident along one ramp: ~0 when instances share the pages"),
    Metric("image_resident_slope_lo", "MiB/instance", NONE, "density", description="95 % interval"),
    Metric("image_resident_slope_hi", "MiB/instance", NONE, "density", description="95 % interval"),
    Metric("image_resident_pooled", "MiB/instance", LOWER, "density",
           description="the image_resident slope of every ramp pooled (last repetition)"),
    Metric("image_resident_pooled_lo", "MiB/instance", NONE, "density", description="its 95 % interval"),
    Metric("image_resident_pooled_hi", "MiB/instance", NONE, "density", description="its 95 % interval"),
    Metric("image_resident_held", "MiB", NONE, "density",
           description="the image's pages in the page cache with every instance held (mincore): once, if shared"),
    Metric("image_size", "MiB", NONE, "density",
           description="bytes of the image's layer files (a guest's: of its layer disks)"),
    Metric("file_charge", "MiB", NONE, "density", summarised=False,
           description="page cache charged to instance `instance`'s own cgroup, all instances held"),
    Metric("file_charge_first", "MiB", NONE, "density",
           description="page cache charged to the first instance's cgroup (it read the image's pages first)"),
    Metric("file_charge_rest", "MiB", LOWER, "density",
           description="median page cache charged to each later instance's cgroup: ~0 when they share the first's"),
    Metric("guest_cache", "MiB", NONE, "density", summarised=False,
           description="file pages in guest `instance`'s own page cache (its meminfo), all instances held"),
    Metric("guest_cache_each", "MiB", LOWER, "density",
           description="median file pages one guest holds in its own page cache: the image's pages it read, per guest"),
    Metric("guest_cache_total", "MiB", NONE, "density",
           description="file pages in the guests' own page caches with every instance held: once per guest"),
)


@dataclass
class Reads:
    """The page-cache readings of one ramp (``image`` None: the control ramp, or no image)."""

    image: Image | None = None
    #: the host files the instances read the image from when not its layers (a guest's layer disks:
    #: ``Backend.image_files``)
    files: tuple[Path, ...] | None = None
    cached: list[int] = field(default_factory=list)
    resident: list[int] = field(default_factory=list)
    image_bytes: int = 0
    charges: list[int] = field(default_factory=list)
    #: guests: the file pages each holds in its own page cache, all held (bytes)
    guest_caches: list[int] = field(default_factory=list)

    def read(self) -> None:
        """One point (right after MemAvailable settled)."""
        self.cached.append(accounting.meminfo("Cached"))
        if self.image is not None:
            # imported here: runtimes.image.pagecache is only needed for image workloads
            from runtimes.image import pagecache

            if self.files is not None:
                found = [pagecache.file_resident(f) for f in self.files]
                self.resident.append(sum(r for r, _ in found))
                self.image_bytes = sum(size for _, size in found)
            else:
                r = pagecache.resident(self.image.layers)
                self.resident.append(r.resident)
                self.image_bytes = r.total

    def charge(self, held: Sequence[Instance]) -> None:
        """With every instance held: each one's own file charge (none without cgroups), and each
        guest's own page cache (what its meminfo says, asked now)."""
        self.charges = [c for c in (accounting.file_charge(i) for i in held) if c is not None]
        caches = (reported(guest_report(i), "guest_page_cache") for i in held)
        self.guest_caches = [round(c * MIB) for c in caches if c is not None]

    @property
    def where(self) -> str:
        return "mincore of the guests' layer disks" if self.files is not None else "mincore of the image's layer files"


def _line(rows: Rows, name: str, points: Sequence[int], note: str) -> None:
    from harness.stats import slope

    fit = slope.theil_sen(list(range(len(points))), [(v - points[0]) / MIB for v in points])
    _fit_rows(rows, f"{name}_slope", fit, note)


def _fit_rows(rows: Rows, metric: str, fit: Any, note: str) -> None:
    """A slope and, when it has one (``harness.stats.slope``: enough points), its interval."""
    rows.add(metric, fit.slope, note="; ".join(w for w in (note, fit.why) if w))
    if not fit.why:
        rows.add(f"{metric}_lo", fit.lo)
        rows.add(f"{metric}_hi", fit.hi)


def add_rows(rows: Rows, ramp: Reads, control: Reads) -> None:
    """One repetition's rows: the points, the slopes of this ramp, the per-instance charges."""
    for k, (r, c) in enumerate(zip(ramp.cached, control.cached, strict=True)):
        rows.add("cached", r / MIB, instances=k)
        rows.add("cached_control", c / MIB, instances=k)
    _line(rows, "cached", ramp.cached, "Cached of /proc/meminfo")
    if ramp.resident:
        for k, v in enumerate(ramp.resident):
            rows.add("image_resident", v / MIB, instances=k)
        _line(rows, "image_resident", ramp.resident, ramp.where)
        rows.add("image_resident_held", ramp.resident[-1] / MIB, note=ramp.where)
        rows.add("image_size", ramp.image_bytes / MIB)
    if ramp.guest_caches:
        note = "Cached - Shmem of each guest's own meminfo, asked with all held"
        for k, v in enumerate(ramp.guest_caches):
            rows.add("guest_cache", v / MIB, note=note, instance=k)
        rows.add("guest_cache_each", statistics.median(ramp.guest_caches) / MIB, note=note)
        rows.add("guest_cache_total", sum(ramp.guest_caches) / MIB, note=note)
    if ramp.charges:
        note = "memory.stat of each instance's own cgroup"
        for k, v in enumerate(ramp.charges):
            rows.add("file_charge", v / MIB, note=note, instance=k)
        rows.add("file_charge_first", ramp.charges[0] / MIB, note=note)
        if len(ramp.charges) > 1:
            rows.add("file_charge_rest", statistics.median(ramp.charges[1:]) / MIB, note=note)


def pool(rows: Rows, ramps: Sequence[Reads], pooled_fit: Callable[[list[list[float]]], Any]) -> None:
    """The last repetition's rows: each slope over every ramp of the case pooled (``pooled_fit``:
    density's, on drops from each ramp's own start)."""
    for name, series, note in (("cached", [r.cached for r in ramps], "Cached of /proc/meminfo"),
                               ("image_resident", [r.resident for r in ramps if r.resident], ramps[0].where)):
        if not series:
            continue
        fit = pooled_fit([[-v / MIB for v in s] for s in series])  # growth, as density's drop
        _fit_rows(rows, f"{name}_pooled", fit, f"{note}; {len(series)} ramps pooled")
