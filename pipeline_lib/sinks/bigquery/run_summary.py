"""The run summary: a small table beside each stream's table that says which producer
runs and symbols landed, their event-time span and when they last landed.

Why it exists: what the live chart needs at every refresh (the latest run, its
symbols, the newest event time of a symbol) is a question about the whole table.
Asked of the table itself it scans all the history ever landed, so a refresh costs
more (in time, and in bytes billed on real BigQuery) each day. Wall-clock windows do
not bound it either: a CSV replay lands today with event times of 2004. So the
BigQuery sinks keep this summary as they write, and the readers
(:mod:`pipeline_lib.analysis.queries`) ask it first, then read the table bounded to
the run's or the window's event times, which real BigQuery prunes to the day
partitions (and ``symbol`` clusters) shown.

One row per (run, symbol) a consumer process saw, written with the batch that first
carries the pair and then at most every :data:`EVERY_S` while it keeps landing:
``first_ts``/``last_ts`` are the span this process has seen, ``landed_at`` the batch's
landing time. Readers take MIN/MAX over the rows, so several consumers, restarts and
rows written twice all give the same answer. The table is partitioned by day of
``landed_at`` and clustered by run and symbol.

What readers may count on: every run and symbol in the table is in the summary, with
a ``first_ts`` no later than its earliest row, as soon as the batch that brings them
is committed (the summary row is written after the batch's rows and before its
commit: for that moment a reader may see rows the summary does not cover yet).
``last_ts`` may lag the table by up to :data:`EVERY_S` (or a crash's worth): readers
take it as a lower bound of the newest event time and read everything newer. Rows go
in as streaming inserts: a handful a minute, far below every quota, and no load job
(1,500 a day per table) spent on them.

It holds no fact of its own: :func:`rebuild_sql` derives it from the table (setup
runs it once for a table that predates it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline_lib.records.batches import Batch
from pipeline_lib.records.schema import Field
from pipeline_lib.records.streams import Stream
from pipeline_lib.sinks.bigquery.type_mapper import TYPES

log = logging.getLogger(__name__)
EVERY_S = 60.0  # a pair that keeps landing gets a new row at most this often
# The summary's fields, typed as every other table's (the type mapper).
FIELDS: tuple[Field, ...] = (
    Field("run", "text", True, "producer run: the id's prefix before ':'"),
    Field("symbol", "text", True, "instrument"),
    Field("first_ts", "timestamp", True, "earliest event time seen by the writer"),
    Field("last_ts", "timestamp", True, "latest event time seen by the writer"),
    Field("landed_at", "timestamp", True, "when the batch that wrote this row landed"),
)
# (name, BigQuery type, mode, description): the summary's columns.
COLUMNS: tuple[tuple[str, str, str, str], ...] = TYPES.columns(FIELDS)


# A record id's run tag: its prefix before the first ':' ("" for an id without one,
# which no run filter selects alone), in Arrow and in SQL over the stream's id column.
RUN_PATTERN = r"^(?P<run>[^:]*):"
RUN_SQL = "IFNULL(REGEXP_EXTRACT({id}, r'^([^:]*):'), '')"


def rebuild_sql(stream: Stream, table_sql: str, landed_sql: str = "ingested_at") -> str:
    """SELECT that derives the summary from the table: one row per (run, symbol)."""
    run = RUN_SQL.format(id=stream.id_field)
    return (
        f"SELECT {run} AS run, symbol, MIN(ts) AS first_ts, MAX(ts) AS last_ts, "  # noqa: S608
        f"MAX({landed_sql}) AS landed_at FROM {table_sql} GROUP BY run, symbol"
    )


@dataclass
class _Pair:
    first_ts: datetime
    last_ts: datetime
    written: float | None = None  # clock() of the last row written for it
    changed: bool = True  # a later last_ts since that row
    earlier: bool = False  # an earlier first_ts since that row


class RunSummary:
    """What one BigQuery sink has landed, per (run, symbol), and the rows to insert.

    ``insert(rows)`` sends rows (the sink passes a streaming insert into the summary
    table); raising makes the batch's write fail, so the batch is not committed and a
    run that landed is never missing from the summary.
    """

    def __init__(
        self,
        stream: Stream,
        insert: Callable[[list[dict[str, Any]]], None],
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.insert = insert
        self.every_s = every_s
        self.clock = clock
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._lock = threading.Lock()  # two batches in flight are noted from two threads

    def note(self, batch: Batch, refused: set[tuple[str, int, int]] | None = None) -> int:
        """Take in a batch that landed (without the ``refused`` records: topic,
        partition, offset) and write the rows due; returns how many."""
        with self._lock:
            self.observe(batch, refused or set())
            return self.write(batch.closed_at)

    def flush(self, landed_at: datetime) -> int:
        """Write every pair changed since its last row (at close)."""
        with self._lock:
            return self.write(landed_at, force=True)

    def observe(self, batch: Batch, refused: set[tuple[str, int, int]] = frozenset()) -> None:
        """Take in a batch's records (their id, symbol and ts columns), but ``refused``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        parts = [part for part in batch.parts if len(part)]
        if refused:
            kept = []
            for part in parts:
                keep = [
                    i
                    for i, offset in enumerate(part.offsets)
                    if (part.topic, part.partition, offset) not in refused
                ]
                if keep:  # a part refused whole adds nothing
                    kept.append(part.take(keep))
            parts = kept
        chunks = [chunk for part in parts for chunk in part.chunks if chunk.num_rows]
        if not chunks:
            return
        table = pa.concat_tables(chunks)
        runs = pc.extract_regex(table.column(self.stream.id_field), RUN_PATTERN)
        run = pc.fill_null(pc.struct_field(runs, [0]), "")  # an id without a tag: run ""
        keyed = pa.table({"run": run, "symbol": table.column("symbol"), "ts": table["ts"]})
        spans = keyed.group_by(["run", "symbol"]).aggregate([("ts", "min"), ("ts", "max")])
        for run, symbol, first, last in zip(
            spans["run"].to_pylist(),
            spans["symbol"].to_pylist(),
            spans["ts_min"].to_pylist(),
            spans["ts_max"].to_pylist(),
            strict=True,
        ):
            if symbol is None or first is None:
                continue
            pair = self._pairs.get((run, symbol))
            if pair is None:
                self._pairs[(run, symbol)] = _Pair(first, last)
                continue
            if first < pair.first_ts:  # readers take first_ts as exact: write it now
                pair.first_ts, pair.earlier = first, True
            if last > pair.last_ts:
                pair.last_ts, pair.changed = last, True

    def due(self, force: bool = False) -> list[tuple[str, str]]:
        """Pairs to write now: never written, with an earlier ``first_ts``, or with a
        later ``last_ts`` and last written ``every_s`` ago (at once with ``force``)."""
        now = self.clock()
        return [
            key
            for key, pair in self._pairs.items()
            if pair.written is None
            or pair.earlier
            or (pair.changed and (force or now - pair.written >= self.every_s))
        ]

    def write(self, landed_at: datetime, force: bool = False) -> int:
        """Insert the rows due (see :meth:`due`); returns how many."""
        keys = self.due(force)
        if not keys:
            return 0
        rows = []
        for run, symbol in keys:
            pair = self._pairs[(run, symbol)]
            rows.append(
                {
                    "run": run,
                    "symbol": symbol,
                    "first_ts": pair.first_ts.isoformat(),
                    "last_ts": pair.last_ts.isoformat(),
                    "landed_at": landed_at.isoformat(),
                }
            )
        self.insert(rows)
        now = self.clock()
        for key in keys:
            self._pairs[key].written = now
            self._pairs[key].changed = self._pairs[key].earlier = False
        return len(rows)
