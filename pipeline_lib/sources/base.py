"""What every source shares: bounding by count or duration, pacing, progress bars.

A source is any iterator of :class:`~pipeline_lib.records.schema.Tick`. :func:`bounded`
stops it after ``max_records`` or ``duration`` seconds of wall time, so a notebook
run under papermill always ends; :func:`paced` slows it to a wall-clock rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from pipeline_lib.core.errors import PipelineError
from pipeline_lib.records.schema import Tick


class SourceError(PipelineError, ValueError):
    """A source cannot be opened or read as asked (bad option, file, symbol)."""


T = TypeVar("T")


def bounded(
    records: Iterable[T],
    max_records: int | None = None,
    duration: float | None = None,
    progress: bool = False,
    description: str = "records",
    counted: type | None = None,
) -> Iterator[T]:
    """Yield from ``records`` until ``max_records`` or ``duration`` seconds, whichever first.

    ``counted``: only records of this type count towards ``max_records`` (ticks and
    news merged: 20,000 ticks, plus the news published among them).
    """
    if max_records is not None and max_records < 0:
        raise SourceError(f"max_records must be >= 0, got {max_records}")
    if duration is not None and not (math.isfinite(duration) and duration >= 0):
        raise SourceError(f"duration must be a number of seconds >= 0, got {duration}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_records, desc=description, unit="rec", mininterval=0.5)
    deadline = None if duration is None else time.monotonic() + duration
    count = 0
    try:
        if max_records == 0:
            return
        for record in records:
            if deadline is not None and time.monotonic() >= deadline:
                return
            yield record
            if counted is not None and not isinstance(record, counted):
                continue
            count += 1
            if bar is not None:
                bar.update(1)
            if max_records is not None and count >= max_records:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
    finally:
        if bar is not None:
            bar.close()


def classroom_pace(
    max_records: int | None,
    duration: float | None,
    rate: float | None,
    speed: float | None,
) -> tuple[float | None, float | None]:
    """(rate, speed) for a run: an unbounded run with no pace given goes at event time
    = wall clock (``speed=1``), so a live chart and the GCS dates stay true and a laptop
    keeps up; bounded runs and explicit paces are left as they are."""
    if max_records is None and duration is None and rate is None and speed is None:
        return None, 1.0
    return rate, speed


def paced(
    records: Iterable[Tick],
    rate: float | None = None,
    speed: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Tick]:
    """Release records at ``rate`` per wall second, or at ``speed`` × event time.

    ``speed=60`` replays one minute of event time per wall second; both ``None`` means
    as fast as possible.
    """
    if rate is not None and speed is not None:
        raise SourceError("give rate or speed, not both")
    for name, value in (("rate", rate), ("speed", speed)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise SourceError(f"{name} must be a positive finite number, got {value}")
    if rate is None and speed is None:
        yield from records
        return
    start_wall = clock()
    first_event: float | None = None
    for index, record in enumerate(records):
        if rate is not None:
            due = start_wall + index / rate
        else:
            event = record.ts.timestamp()
            if first_event is None:
                first_event = event
            due = start_wall + (event - first_event) / speed  # type: ignore[operator]
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        yield record
