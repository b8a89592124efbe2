"""Market data sources: iterators of :class:`~pipeline_lib.records.schema.Tick`, of
:class:`~pipeline_lib.records.news.News`, or of both merged in event-time order.

:func:`open_source` builds one by name and stream, the way the command line and the
notebooks ask for it; :func:`~pipeline_lib.sources.base.bounded` and
:func:`~pipeline_lib.sources.base.paced` bound and pace any of them.
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pipeline_lib.core.config import SAMPLE_CSV, Settings
from pipeline_lib.records.schema import Tick
from pipeline_lib.records.streams import stream_names
from pipeline_lib.sources.alphavantage import (
    AlphaVantageClient,
    AlphaVantageNewsSource,
    AlphaVantageSource,
)
from pipeline_lib.sources.base import SourceError, bounded, paced
from pipeline_lib.sources.csv_replay import CsvReplay
from pipeline_lib.sources.news_simulator import NewsSimulator
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig, symbol_specs

SourceName = Literal["simulator", "csv", "alphavantage"]
SOURCE_NAMES: tuple[str, ...] = ("simulator", "csv", "alphavantage")

__all__ = [
    "SOURCE_NAMES",
    "AlphaVantageSource",
    "CsvReplay",
    "MarketSimulator",
    "Merged",
    "NewsSimulator",
    "SimulatorConfig",
    "bounded",
    "open_source",
    "paced",
    "source_from_parameters",
    "stream",
]


class Merged:
    """Several sources as one, in event-time order (stable: earlier sources first at
    equal times); keeps the simulator's ``seed`` and ``start`` for resume hints.

    ``counted``: the record type a ``max_records`` bound counts (the first source's:
    ticks, with news riding along).
    """

    def __init__(self, *sources: Iterable[Any], counted: type | None = None) -> None:
        self.sources = sources
        self.counted = counted
        first = sources[0]
        if hasattr(first, "seed") and hasattr(first, "start"):
            self.seed, self.start = first.seed, first.start

    def __iter__(self) -> Iterator[Any]:
        return heapq.merge(*self.sources, key=lambda record: record.ts)


def open_source(
    name: str,
    settings: Settings,
    symbols: list[str] | None = None,
    seed: int | None = None,
    clock: Literal["always_open", "market"] = "always_open",
    interval_s: float = 1.0,
    start: datetime | None = None,
    csv_path: str | Path | None = None,
    split_adjust: bool = False,
    av_function: str = "intraday",
    av_interval: str = "5min",
    stream: str = "ticks",
) -> Iterable[Any]:
    """A source by name and stream ("ticks", "news" or "both"), with its options.

    With "both", the simulator's prices and headlines share seed, start and symbols,
    so each material story comes with its price move.
    """
    streams = stream_names(stream)
    if "news" in streams:
        ticks_options = {
            "clock": clock,
            "interval_s": interval_s,
            "av_function": av_function,
            "av_interval": av_interval,
        }
        return _news_source(name, settings, symbols, seed, start, streams, ticks_options)
    if name == "simulator":
        config = SimulatorConfig(
            symbols=symbol_specs(symbols),
            seed=seed,
            clock=clock,
            interval_s=interval_s,
            start=start,
        )
        return MarketSimulator(config)
    if name == "csv":
        return CsvReplay(csv_path or SAMPLE_CSV, symbols=symbols, split_adjust=split_adjust)
    if name == "alphavantage":
        client = AlphaVantageClient.from_settings(settings)
        return AlphaVantageSource(
            client, symbols or ["IBM"], function=av_function, interval=av_interval
        )
    raise SourceError(f"unknown source {name!r}; choose one of {', '.join(SOURCE_NAMES)}")


def _news_source(
    name: str,
    settings: Settings,
    symbols: list[str] | None,
    seed: int | None,
    start: datetime | None,
    streams: tuple[str, ...],
    ticks_options: dict[str, Any],
) -> Iterable[Any]:
    if name == "simulator":
        seed = seed if seed is not None else secrets.randbits(32)
        start = start or datetime.now(UTC).replace(microsecond=0)
        names = [spec.symbol for spec in symbol_specs(symbols)]
        news = NewsSimulator(names, seed, start)
    elif name == "alphavantage":
        client = AlphaVantageClient.from_settings(settings)
        news = AlphaVantageNewsSource(client, symbols or ["IBM"])  # type: ignore[assignment]
    else:
        raise SourceError(
            f"the {name} source has no news: use --source simulator or alphavantage for "
            "the news stream, or --stream ticks"
        )
    if streams == ("news",):
        return news
    ticks = open_source(name, settings, symbols=symbols, seed=seed, start=start, **ticks_options)
    return Merged(ticks, news, counted=Tick)


def parse_symbols(symbols: str | Sequence[str] | None) -> list[str] | None:
    """``"aapl, msft"`` or ``["aapl"]`` → ``["AAPL", "MSFT"]``; empty → None (the default)."""
    if symbols is None:
        return None
    items = symbols.split(",") if isinstance(symbols, str) else list(symbols)
    return [s.strip().upper() for s in items if s.strip()] or None


def parse_start(start: datetime | str | None) -> datetime | None:
    """ISO 8601 text or a datetime; without a zone it is UTC."""
    if start is None or start == "":
        return None
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start.strip())
        except ValueError:
            raise SourceError(
                f"start {start!r} is not an ISO 8601 time (e.g. 2024-01-02T14:30:00Z)"
            ) from None
    return start if start.tzinfo else start.replace(tzinfo=UTC)


def source_from_parameters(
    settings: Settings,
    source: str = "simulator",
    symbols: str | Sequence[str] | None = None,
    seed: int | None = None,
    clock: Literal["always_open", "market"] = "always_open",
    interval_s: float = 1.0,
    start: datetime | str | None = None,
    csv_path: str | Path | None = None,
    split_adjust: bool = False,
    av_function: str = "intraday",
    av_interval: str = "5min",
    stream: str = "ticks",
) -> Iterable[Any]:
    """The source that a notebook's parameters or the command line's options describe.

    The one place that turns user-facing parameters (symbols as text, start as ISO
    text, "" for defaults) into a source, so the producer notebook and
    ``python -m pipeline_lib produce`` cannot drift apart.
    """
    return open_source(
        source,
        settings,
        symbols=parse_symbols(symbols),
        seed=seed,
        clock=clock,
        interval_s=interval_s,
        start=parse_start(start),
        csv_path=csv_path or None,
        split_adjust=split_adjust,
        av_function=av_function,
        av_interval=av_interval,
        stream=stream,
    )


def stream(
    source: Iterable[Any],
    max_records: int | None = None,
    duration: float | None = None,
    rate: float | None = None,
    speed: float | None = None,
    progress: bool = False,
) -> Iterator[Any]:
    """Pace, then bound a source: the iterator the producer consumes."""
    return bounded(
        paced(source, rate=rate, speed=speed),
        max_records=max_records,
        duration=duration,
        progress=progress,
        description="records",
        counted=getattr(source, "counted", None),
    )
