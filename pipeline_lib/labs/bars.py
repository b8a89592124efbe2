"""The bars lab: the reference (per-minute OHLCV and VWAP of one symbol, computed from
the ticks themselves with pandas) and the checks on a student's query.

*Each event once, filtered first.* The raw table holds copies of an event (a replayed
batch lands again); de-duplicating keeps one row per ``event_id``. Filtering by symbol
**before** de-duplicating reads only that symbol's rows (on real BigQuery, only its
clusters); the ``_dedup`` view de-duplicates every row of every symbol first. Neither
a dry run (an upper bound that ignores clustering) nor the emulator (no estimate at
all) tells the two apart by bytes, so the grader tells them apart by their answers:
before the notebook runs it lands **decoys** in the run's table: copies of some ticks
of one symbol under another symbol, landed first. A query that de-duplicates the whole
table first keeps a decoy for those events (the first copy) and then filters it out,
so the symbol's bars miss them; a query that filters first never sees the decoys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from pipeline_lib.core.config import Settings
from pipeline_lib.labs import kit
from pipeline_lib.labs.checks import Check, Run, cell_function, check, event_ids, landed
from pipeline_lib.records.routes import route
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks.bigquery.type_mapper import TYPES

COLUMNS = ["minute", "open", "high", "low", "close", "volume", "vwap"]
DECOY_SYMBOL = "ZZZZ"
DECOY_EVERY = 7  # every 7th tick of the decoyed symbol gets a decoy copy


def reference_bars(ticks: list[Any], symbol: str) -> pd.DataFrame:
    """The symbol's bars: first open, highest high, lowest low, last close, summed
    volume, and VWAP = sum(close x volume) / sum(volume), per minute of event time."""
    frame = pd.DataFrame([t._asdict() for t in ticks if t.symbol == symbol])
    frame["minute"] = pd.to_datetime(frame["ts"], utc=True).dt.floor("min")
    frame = frame.sort_values("ts")
    frame["turnover"] = frame["close"] * frame["volume"]
    grouped = frame.groupby("minute")
    bars = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
            "vwap": grouped["turnover"].sum() / grouped["volume"].sum(),
        }
    )
    return bars.reset_index()[COLUMNS]


def decoyed(ticks: list[Any]) -> tuple[str, list[Any]]:
    """The symbol given decoys, and the decoys: copies of every :data:`DECOY_EVERY`-th
    of its ticks under :data:`DECOY_SYMBOL`, with the same event ids."""
    symbol = ticks[0].symbol
    own = [t for t in ticks if t.symbol == symbol]
    return symbol, [t._replace(symbol=DECOY_SYMBOL) for t in own[::DECOY_EVERY]]


def prepare(settings: Settings, parameters: dict[str, Any]) -> None:
    """Before the notebook runs: land the decoys in the run's raw table (by load job),
    so they are the first copies of their events."""
    from pipeline_lib.records.batches import Batch
    from pipeline_lib.sinks.bigquery import BigQuerySink

    ticks = kit.simulated_ticks(int(parameters["ticks"]), int(parameters["seed"]))
    _, decoys = decoyed(ticks)
    to = route(settings)
    part = TICKS.partition_batch(to.topic, 0, decoys, list(range(len(decoys))))
    sink = BigQuerySink(settings)
    try:
        sink.setup()
        sink.write(Batch([part], datetime.now(UTC), "lab-grader-decoys"))
    finally:
        sink.close()


def _bars(settings: Settings, sql: str, symbol: str) -> pd.DataFrame:
    from pipeline_lib.clients.google import run_query

    rows = run_query(
        settings, sql, name="lab bars: your query", parameters=[TYPES.parameter("symbol", symbol)]
    )
    return rows.to_dataframe(create_bqstorage_client=False)


def mismatches(settings: Settings, sql: str, ticks: list[Any], symbols: list[str]) -> list[str]:
    """How the query's bars differ from the reference, symbol by symbol ([]: they do
    not); a query that fails or lacks columns is one line saying so."""
    wrong = []
    for symbol in symbols:
        expected = reference_bars(ticks, symbol)
        try:
            found = _bars(settings, sql, symbol)
        except Exception as error:
            said = (str(getattr(error, "message", error)).splitlines() or [""])[0][:200]
            return [f"your query failed: {said or type(error).__name__}"]
        missing = [c for c in COLUMNS if c not in found.columns]
        if missing:
            return [f"columns missing: {', '.join(missing)} (name them {', '.join(COLUMNS)})"]
        found = found[COLUMNS].sort_values("minute").reset_index(drop=True)
        found["minute"] = pd.to_datetime(found["minute"], utc=True)
        if len(found) != len(expected) or not found["minute"].equals(expected["minute"]):
            wrong.append(f"{symbol}: {len(found)} bars, expected {len(expected)} minutes")
            continue
        for column in COLUMNS[1:]:
            got = found[column].astype(float).to_numpy()
            want = expected[column].astype(float).to_numpy()
            off = abs(got - want) > 1e-6 * abs(want) + 1e-9
            if off.any():
                first = int(off.argmax())
                wrong.append(
                    f"{symbol} {column} at {expected['minute'][first]:%H:%M}: "
                    f"{got[first]:g}, expected {want[first]:g}"
                )
                break
    return wrong


def bars(run: Run) -> list[Check]:
    ticks = run.ticks()
    settings = run.settings
    symbol, decoys = decoyed(ticks)
    decoy_ids = {t.event_id for t in decoys}
    checks = landed(
        run,
        settings,
        [i for i in event_ids(ticks) if i not in decoy_ids],
        "your run",
        "run the notebook's first cells: they send and land the run your query reads",
    )
    source = run.cell_source("bars_sql")
    build = cell_function(source, "bars_sql") if source else None
    names = (
        "your query reads the raw table, not the view",
        "your query filters by symbol before de-duplicating",
        "your bars equal the reference",
    )
    to = route(settings)
    try:
        sql = str(build(to.table_sql, to.view_sql)) if build else None
    except Exception as error:
        sql, said = (
            None,
            f"bars_sql raised {type(error).__name__}" + (f": {error}" if str(error) else ""),
        )
    else:
        said = "no function bars_sql(raw, view) in the cell 'bars_sql'" if build is None else ""
    if sql is None:
        hint = "define bars_sql(raw, view) in the lab's cell: it returns the SQL text"
        return checks + [check(name, False, said, hint) for name in names]
    uses_view = to.dedup_view in sql
    checks.append(
        check(
            names[0],
            to.table_sql in sql and not uses_view,
            "it reads the _dedup view"
            if uses_view
            else "it reads the raw table"
            if to.table_sql in sql
            else "it reads neither the raw table nor the view",
            "the view de-duplicates every row of every symbol before your filter applies: "
            "read {raw} and de-duplicate the symbol's rows yourself",
        )
    )
    first = mismatches(settings, sql, ticks, [symbol])
    checks.append(
        check(
            names[1],
            not first,
            f"{symbol}'s bars match, with {len(decoys)} decoy copies of its ticks under "
            f"{DECOY_SYMBOL} landed first"
            if not first
            else "; ".join(first[:2])
            + f" ({len(decoys)} of {symbol}'s events have a first copy under {DECOY_SYMBOL})",
            "WHERE symbol = @symbol in the same SELECT that reads {raw}, with the "
            "de-duplication (QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY "
            "ingested_at) = 1) applied to what the filter keeps",
        )
    )
    others = sorted({t.symbol for t in ticks} - {symbol})
    rest = mismatches(settings, sql, ticks, others)
    checks.append(
        check(
            names[2],
            not rest,
            f"{len(others)} symbols' bars match" if not rest else "; ".join(rest[:3]),
            "count each event once (the raw table holds copies of replayed ticks: "
            "de-duplicate by event_id); open = first by ts, close = last by ts",
        )
    )
    return checks
