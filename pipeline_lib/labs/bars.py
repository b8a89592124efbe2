"""The bars lab's reference: per-minute OHLCV and VWAP of one symbol, computed from the
ticks themselves (pandas), and the two checks on a student's query: its numbers, and
how it reads the raw table.

*Reading.* Each event once needs a de-duplication over the raw table (copies of an
event share its ``event_id``). Filtering by symbol **before** de-duplicating lets
BigQuery read the symbol's clusters only; reading the ``_dedup`` view and filtering
after it reads every row of every symbol. Real BigQuery says which by a dry run's
bytes; the emulator estimates nothing (:func:`pipeline_lib.clients.google.dry_run`),
so there the query's text is checked instead: the raw table, not the view, with
``@symbol`` in it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline_lib.core.config import Settings
from pipeline_lib.labs.checks import Check, Run, cell_function, check, event_ids, landed
from pipeline_lib.records.routes import route
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks.bigquery.table_manager import dedup_sql
from pipeline_lib.sinks.bigquery.type_mapper import TYPES

COLUMNS = ["minute", "open", "high", "low", "close", "volume", "vwap"]
BYTES_SLACK = 1.5  # a student's query may read this much more than the reference


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


def _bars(settings: Settings, sql: str, symbol: str) -> pd.DataFrame:
    from pipeline_lib.clients.google import run_query

    rows = run_query(
        settings, sql, name="lab bars: your query", parameters=[TYPES.parameter("symbol", symbol)]
    )
    return rows.to_dataframe(create_bqstorage_client=False)


def compare(settings: Settings, sql: str, ticks: list[Any]) -> Check:
    """The student's query, run for each symbol of the run, against the reference."""
    name = "your bars equal the reference"
    wrong = []
    for symbol in sorted({t.symbol for t in ticks}):
        expected = reference_bars(ticks, symbol)
        try:
            found = _bars(settings, sql, symbol)
        except Exception as error:
            said = str(getattr(error, "message", error)).splitlines()[0][:200]
            return check(name, False, f"your query failed: {said}", "run it in the notebook first")
        missing = [c for c in COLUMNS if c not in found.columns]
        if missing:
            return check(
                name,
                False,
                f"columns missing: {', '.join(missing)}",
                f"name the columns {', '.join(COLUMNS)}",
            )
        found = found[COLUMNS].sort_values("minute").reset_index(drop=True)
        found["minute"] = pd.to_datetime(found["minute"], utc=True)
        if len(found) != len(expected):
            wrong.append(f"{symbol}: {len(found)} bars, expected {len(expected)}")
            continue
        for column in COLUMNS[1:]:
            got = found[column].astype(float).to_numpy()
            want = expected[column].astype(float).to_numpy()
            if not ((abs(got - want) <= 1e-6 * abs(want) + 1e-9).all()):
                first = int((abs(got - want) > 1e-6 * abs(want) + 1e-9).argmax())
                wrong.append(
                    f"{symbol} {column} at {expected['minute'][first]:%H:%M}: "
                    f"{got[first]:g}, expected {want[first]:g}"
                )
                break
    return check(
        name,
        not wrong,
        "every symbol's bars match" if not wrong else "; ".join(wrong[:3]),
        "count each event once (the raw table holds copies of replayed ticks: "
        "de-duplicate by event_id), open = first by ts, close = last by ts",
    )


def reads_raw_filtered(settings: Settings, sql: str) -> Check:
    """The query filters the raw table by ``@symbol`` before de-duplicating: the bytes of
    a dry run against the reference's on real BigQuery; its text on the emulator."""
    from pipeline_lib.clients.google import dry_run

    name = "your query reads only the symbol's rows"
    to = route(settings)
    hint = (
        "read the raw table with WHERE symbol = @symbol and de-duplicate what that "
        "keeps (QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ...) = 1); the _dedup "
        "view de-duplicates every row of every symbol first"
    )
    parameters = [TYPES.parameter("symbol", "AAPL")]
    try:
        estimate = dry_run(settings, sql, parameters)
    except Exception as error:
        said = str(getattr(error, "message", error)).splitlines()[0][:200]
        return check(
            name,
            False,
            f"a dry run of your query failed: {said}",
            "run your query in the notebook first: it must run before it can be measured",
        )
    if estimate is not None:
        ours = dry_run(settings, dedup_sql(TICKS, to.table_sql, "symbol = @symbol"), parameters)
        limit = BYTES_SLACK * (ours.bytes_processed if ours else 0)
        return check(
            name,
            estimate.bytes_processed <= limit,
            f"a dry run reads {estimate.bytes_processed:,} bytes; the reference {limit:,.0f}",
            hint,
        )
    uses_view = to.dedup_view in sql
    filtered = "@symbol" in sql and to.table_sql in sql
    return check(
        name,
        filtered and not uses_view,
        "it filters the raw table by @symbol (checked on its text: the emulator estimates no bytes)"
        if filtered and not uses_view
        else "it reads the _dedup view"
        if uses_view
        else "it does not filter the raw table by @symbol",
        hint,
    )


def bars(run: Run) -> list[Check]:
    ticks = run.ticks()
    settings = run.settings
    checks = landed(
        run,
        settings,
        event_ids(ticks),
        "your run",
        "run the notebook's first cells: they send and land the run your query reads",
    )
    source = run.cell_source("bars_sql")
    build = cell_function(source, "bars_sql") if source else None
    name = "your bars equal the reference"
    if build is None:
        checks.append(
            check(
                name,
                False,
                "no function bars_sql(raw, view) in the cell 'bars_sql'",
                "define bars_sql(raw, view) in the lab's cell, returning the SQL text",
            )
        )
        return checks
    to = route(settings)
    try:
        sql = str(build(to.table_sql, to.view_sql))
    except Exception as error:
        checks.append(
            check(
                name,
                False,
                f"bars_sql raised {type(error).__name__}" + (f": {error}" if str(error) else ""),
                "fill in bars_sql: it returns the SQL text of one symbol's bars",
            )
        )
        return checks
    checks.append(reads_raw_filtered(settings, sql))
    checks.append(compare(settings, sql, ticks))
    return checks
