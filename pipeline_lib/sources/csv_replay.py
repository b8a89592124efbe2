"""Replay a historical OHLCV CSV in time order.

Two layouts are understood: Yahoo's single-symbol export
(``Date,Open,High,Low,Close,Adj Close,Volume``; the symbol comes from the file name
or the ``symbol`` argument) and the multi-symbol variant with a ``Ticker`` (or
``Symbol``) column. Rows are replayed oldest first, symbols in a fixed order within a
day; pacing to wall time is :func:`pipeline_lib.sources.base.paced`'s job.

Daily bars are stamped at the session close, 16:00 America/New_York, in UTC. Every
row is validated like a Kafka message; a bad row raises :class:`InvalidRecord` naming
the file and line (or, with ``on_invalid="skip"``, is counted in ``skipped``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pandas as pd

from pipeline_lib.core.config import SAMPLE_CSV
from pipeline_lib.records.schema import InvalidRecord, Tick, make_event_id, parse_tick
from pipeline_lib.sources.base import SourceError

YAHOO_COLUMNS = ("Date", "Open", "High", "Low", "Close", "Adj Close", "Volume")
SYMBOL_COLUMNS = ("Ticker", "Symbol")
MARKET_TIMEZONE = "America/New_York"
CLOSE_TIME = pd.Timedelta(hours=16)


def read_ohlcv_csv(
    path: str | Path,
    symbol: str | None = None,
    symbols: list[str] | None = None,
) -> pd.DataFrame:
    """The CSV as a frame with columns symbol, ts (UTC), OHLC, adj_close, volume, line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No CSV at {path}. Sample data lives in {SAMPLE_CSV.parent}/.")
    frame = pd.read_csv(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in YAHOO_COLUMNS if c not in frame.columns and c != "Adj Close"]
    if missing:
        raise SourceError(
            f"{path.name}: missing column(s) {missing}; expected Yahoo's layout "
            f"{','.join(YAHOO_COLUMNS)} (optionally with a Ticker column)"
        )
    symbol_column = next((c for c in SYMBOL_COLUMNS if c in frame.columns), None)
    frame["line"] = frame.index + 2  # header is line 1
    if symbol_column:
        frame["symbol"] = frame[symbol_column].astype(str).str.strip().str.upper()
    else:
        frame["symbol"] = (symbol or path.name.split(".")[0]).upper()
    if symbols:
        wanted = {s.upper() for s in symbols}
        frame = frame[frame["symbol"].isin(wanted)]
    dates = pd.to_datetime(frame["Date"], errors="coerce")
    local = (dates.dt.normalize() + CLOSE_TIME).dt.tz_localize(MARKET_TIMEZONE)
    frame["ts"] = local.dt.tz_convert("UTC")
    frame = frame.rename(
        columns={
            "Open": "open",
            "High": "high",
            "Low": "low",
            "Close": "close",
            "Adj Close": "adj_close",
            "Volume": "volume",
        }
    )
    if "adj_close" not in frame.columns:
        frame["adj_close"] = float("nan")
    order = frame.sort_values(["ts", "symbol"], kind="stable")
    return order[["symbol", "ts", "open", "high", "low", "close", "adj_close", "volume", "line"]]


class CsvReplay:
    """Iterator of Ticks from a CSV, oldest first."""

    source = "csv"

    def __init__(
        self,
        path: str | Path = SAMPLE_CSV,
        symbol: str | None = None,
        symbols: list[str] | None = None,
        split_adjust: bool = False,
        on_invalid: Literal["raise", "skip"] = "raise",
    ) -> None:
        self.path = Path(path)
        self.frame = read_ohlcv_csv(self.path, symbol=symbol, symbols=symbols)
        self.split_adjust = split_adjust
        self.on_invalid = on_invalid
        self.skipped: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.frame)

    def __iter__(self) -> Iterator[Tick]:
        self.skipped = []
        columns = ["symbol", "ts", "open", "high", "low", "close", "adj_close", "volume", "line"]
        for row in self.frame[columns].itertuples(index=False, name=None):
            symbol, ts, open_, high, low, close, adj_close, volume, line = row
            try:
                yield self._tick(symbol, ts, open_, high, low, close, adj_close, volume)
            except InvalidRecord as error:
                if self.on_invalid == "raise":
                    raise InvalidRecord(f"{self.path.name} line {line}: {error}") from None
                self.skipped.append((int(line), str(error)))

    def _tick(self, symbol, ts, open_, high, low, close, adj_close, volume) -> Tick:
        if pd.isna(ts):
            raise InvalidRecord("Date is not a date", "ts")
        adj = None if pd.isna(adj_close) else float(adj_close)
        if self.split_adjust and adj is not None and close and close > 0:
            factor = adj / close
            open_, high, low, close = (round(x * factor, 4) for x in (open_, high, low, close))
            volume = round(volume / factor) if factor > 0 else volume
        when = ts.to_pydatetime()
        return parse_tick(
            {
                "event_id": make_event_id("csv", symbol, when),
                "symbol": symbol,
                "ts": when,
                "open": _number(open_),
                "high": _number(high),
                "low": _number(low),
                "close": _number(close),
                "adj_close": adj,
                "volume": _number(volume),
                "source": self.source,
            }
        )


def _number(value: object) -> object:
    """numpy scalars to Python numbers, so validation sees ints and floats."""
    return value.item() if hasattr(value, "item") else value
