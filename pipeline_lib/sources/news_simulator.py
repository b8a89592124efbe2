"""Simulated market news, coupled to the market simulator: stories that move prices.

Offline, keyless and deterministic, like the price simulator. Two kinds of stories
per symbol:

* **material** (``material_per_hour``, default 1 per symbol per simulated hour): good
  or bad news that moves the price. Each is a :class:`NewsEvent` with a time, a sign
  and a size; the price simulator adds ``sign * size`` to that symbol's log price at
  that time, and this module publishes a headline of the same polarity ``lead_s``
  seconds earlier (default 60 s: the news leads the price by a minute; negative: the
  price moves first). That is the signal the analysis notebook looks for.
* **background** (``background_per_hour``, default 2): neutral or mixed headlines
  (conferences, filings, "beats on revenue but misses on profit") that move nothing.

The events of a symbol in a clock hour are a pure function of (seed, symbol, hour):
both simulators compute them on their own, so ticks and news produced in separate
processes with the same seed agree, and neither depends on where a run started.
Headlines come from templates written to exercise the scorer: finance verbs
(beats, downgrade, recall), negation ("does not miss"), intensifiers ("sharply").
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from pipeline_lib.records.news import News, make_news_id, scored
from pipeline_lib.sources.base import SourceError

HOUR_US = 3_600_000_000
MAX_LEAD_S = 3_600.0

COMPANIES = {
    "AAPL": "Apple",
    "MSFT": "Microsoft",
    "GOOGL": "Alphabet",
    "META": "Meta",
    "NVDA": "Nvidia",
    "AMZN": "Amazon",
    "KO": "Coca-Cola",
    "JPM": "JPMorgan",
    "XOM": "Exxon Mobil",
    "JNJ": "Johnson & Johnson",
    "PFE": "Pfizer",
    "CAT": "Caterpillar",
    "IBM": "IBM",
}
PUBLISHERS = ("Market Wire", "Street Desk", "Daily Ticker", "Ledger News", "Floor Report")

# {co}: the company. Each material template's polarity is checked against the
# scorer by a unit test, so a lexicon change that flips one fails loudly.
POSITIVE = (
    "{co} beats earnings estimates and raises full-year guidance",
    "{co} shares surge after record quarterly revenue",
    "Analyst upgrades {co} to outperform on strong demand",
    "{co} wins a major government contract",
    "{co} announces a $10 billion buyback",
    "{co} tops forecasts as margins widen sharply",
    "{co} stock jumps on surprise profit",
    "{co} does not miss estimates this quarter",
    "Regulators approve {co} deal, shares rally",
    "{co} boosts dividend after strong quarter",
)
NEGATIVE = (
    "{co} misses estimates and cuts guidance",
    "{co} shares plunge after weak outlook",
    "Analyst downgrades {co} to underperform",
    "{co} recalls products over safety concerns",
    "{co} faces lawsuit over data breach",
    "{co} announces layoffs as sales slump",
    "SEC opens probe into {co} accounting",
    "{co} stock tumbles as profit warning sinks sentiment",
    "{co} results were not good, and guidance was lowered",
    "{co} fined by regulators over outage",
)
BACKGROUND = (
    "{co} to present at industry conference next week",
    "{co} schedules quarterly earnings call",
    "{co} names new chief financial officer",
    "What to watch in {co} shares this week",
    "{co} files annual report with regulators",
    "{co} holds annual shareholder meeting",
    "{co} beats on revenue but misses on profit",
    "{co} raises dividend while cutting jobs",
    "{co} expands in Europe as costs rise",
    "Options traders position for {co} earnings",
)


@dataclass(frozen=True)
class NewsConfig:
    """How much news, how strong, and when relative to the price move."""

    material_per_hour: float = 1.0  # price-moving stories per symbol per simulated hour
    background_per_hour: float = 2.0  # stories that move nothing
    lead_s: float = 60.0  # headline this long before the move (negative: after)
    min_move: float = 0.004  # size of a move in log price (0.4 %) ...
    max_move: float = 0.012  # ... up to 1.2 %

    def __post_init__(self) -> None:
        rates = (self.material_per_hour, self.background_per_hour)
        if not all(np.isfinite(r) and 0 <= r <= 60 for r in rates):
            raise SourceError("news rates must be between 0 and 60 per symbol per hour")
        if not (np.isfinite(self.lead_s) and abs(self.lead_s) <= MAX_LEAD_S):
            raise SourceError(f"lead_s must be within ±{MAX_LEAD_S:g} seconds")
        if not 0 <= self.min_move <= self.max_move <= 0.5:
            raise SourceError("need 0 <= min_move <= max_move <= 0.5")


@dataclass(frozen=True)
class NewsEvent:
    """A price-moving story: when the price moves (µs since the epoch), which way, how much."""

    symbol: str
    time_us: int
    sign: int  # +1 good news, -1 bad news
    size: float  # log-price move, > 0
    template: int


def _symbol_key(symbol: str) -> int:
    return zlib.crc32(symbol.encode())


@functools.lru_cache(maxsize=4096)
def material_events(seed: int, symbol: str, hour: int, config: NewsConfig) -> tuple[NewsEvent, ...]:
    """The price-moving stories of ``symbol`` in clock hour ``hour`` (since the epoch)."""
    if config.material_per_hour <= 0:
        return ()
    rng = np.random.default_rng([seed, _symbol_key(symbol), hour, 0])
    count = int(rng.poisson(config.material_per_hour))
    times = np.sort(rng.integers(0, HOUR_US, count)) + hour * HOUR_US
    signs = np.where(rng.random(count) < 0.5, -1, 1)
    sizes = rng.uniform(config.min_move, config.max_move, count)
    templates = rng.integers(0, len(POSITIVE), count)
    return tuple(
        NewsEvent(symbol, int(t), int(s), float(z), int(k))
        for t, s, z, k in zip(times, signs, sizes, templates, strict=True)
    )


def moves_between(
    seed: int, symbols: Sequence[str], after_us: int, until_us: int, config: NewsConfig
) -> list[NewsEvent]:
    """Material events of ``symbols`` with ``after_us < time <= until_us``."""
    if until_us <= after_us:
        return []
    events = []
    for hour in range(after_us // HOUR_US, until_us // HOUR_US + 1):
        for symbol in symbols:
            events.extend(
                e
                for e in material_events(seed, symbol, hour, config)
                if after_us < e.time_us <= until_us
            )
    return events


class NewsSimulator:
    """Iterator of simulated :class:`News`, in publication order, without end.

    ``NewsSimulator(["AAPL", "MSFT"], seed=7, start=...)``; give the price simulator
    the same seed, start, symbols and ``NewsConfig`` and its jumps match these stories.
    """

    source = "simulator"

    def __init__(
        self,
        symbols: Sequence[str],
        seed: int,
        start: datetime,
        config: NewsConfig | None = None,
    ) -> None:
        if not symbols:
            raise SourceError("the news simulator needs at least one symbol")
        if start.tzinfo is None:
            raise SourceError("start must be timezone-aware")
        self.symbols = [s.upper() for s in symbols]
        self.seed = seed
        self.start = start.astimezone(UTC)
        self.config = config or NewsConfig()
        self.tag = f"sim{seed}-{self.start:%Y%m%dT%H%M%S}"  # the price run's tag

    def _story(self, symbol: str, published_us: int, headline: str, rng_value: int) -> News:
        ts = datetime.fromtimestamp(published_us / 1_000_000, UTC)
        return scored(
            make_news_id(self.tag, symbol, f"{published_us}:{headline}"),
            symbol,
            ts,
            headline,
            self.source,
            publisher=PUBLISHERS[rng_value % len(PUBLISHERS)],
            url=f"https://news.example/{self.tag}/{symbol}/{published_us}",
        )

    def _background(self, symbol: str, hour: int) -> list[tuple[int, str, int]]:
        rng = np.random.default_rng([self.seed, _symbol_key(symbol), hour, 1])
        count = int(rng.poisson(self.config.background_per_hour))
        times = rng.integers(0, HOUR_US, count) + hour * HOUR_US
        picks = rng.integers(0, len(BACKGROUND), count)
        return [
            (int(t), BACKGROUND[int(k)], int(k) + int(t)) for t, k in zip(times, picks, strict=True)
        ]

    def _hour(self, hour: int) -> list[tuple[int, str, News]]:
        """Stories published in clock hour ``hour``, sorted."""
        lead_us = round(self.config.lead_s * 1_000_000)
        low, high = hour * HOUR_US, (hour + 1) * HOUR_US
        stories: list[tuple[int, str, News]] = []
        for symbol in self.symbols:
            name = COMPANIES.get(symbol, symbol)
            items: list[tuple[int, str, int]] = []
            for source_hour in (hour - 1, hour, hour + 1):  # |lead| <= 1 h
                for event in material_events(self.seed, symbol, source_hour, self.config):
                    published = event.time_us - lead_us
                    if low <= published < high:
                        templates = POSITIVE if event.sign > 0 else NEGATIVE
                        items.append((published, templates[event.template], event.template))
            items.extend(self._background(symbol, hour))
            for published, template, pick in items:
                story = self._story(symbol, published, template.format(co=name), pick)
                stories.append((published, symbol, story))
        return sorted(stories, key=lambda item: (item[0], item[1]))

    def __iter__(self) -> Iterator[News]:
        start_us = int(self.start.timestamp() * 1_000_000)
        hour = start_us // HOUR_US
        while True:
            for published, _, story in self._hour(hour):
                if published >= start_us:
                    yield story
            hour += 1
