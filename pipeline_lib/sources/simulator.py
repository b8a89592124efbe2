"""A market simulator: correlated GBM with jumps, U-shaped intraday volume, cent ticks.

Default source of the pipeline: no key, no network, and deterministic — the same
seed and start give the same stream, bar for bar. Each step yields one OHLCV bar per
symbol (``interval_s`` of simulated time, default 1 s).

Model (per symbol, trading-time years, dt = interval / (252 · 6.5 h)):

* log returns ``(mu - sigma²/2 - λκ) dt + sigma √dt Z + jumps`` with ``Z`` correlated
  across symbols through the Cholesky factor of the correlation matrix (same sector
  0.6, across sectors 0.2 by default), and Merton jumps (λ per year, log size
  N(mean, sd), drift-compensated by κ = E[e^J] − 1);
* each bar opens at the previous close; high/low extend beyond open/close by a
  half-normal excursion, so ``low <= open, close <= high`` holds, also after
  rounding to the $0.01 tick (rounding is monotonic);
* news: stories that move prices (:mod:`pipeline_lib.sources.news_simulator`, on
  by default with ``jumps``): at each material story's time the symbol's log price
  moves by the story's signed size, so the news simulator's headlines (same seed)
  come with price moves of their polarity;
* volume: expected daily volume spread over the session with the U-shaped
  multiplier ``1 + 1.5 e^(−u/0.05) + 0.8 e^(−(1−u)/0.05)`` (u = fraction of the
  session elapsed, normalised to mean 1), gamma-distributed around it.

Two clocks: ``market`` steps through NYSE sessions only (exchange_calendars, XNYS,
offline); ``always_open`` runs around the clock with back-to-back 6.5 h sessions, for
classroom runs at any hour. Pacing to wall time is done by
:func:`pipeline_lib.sources.base.paced` (``speed`` simulated seconds per wall second).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

from pipeline_lib.records.schema import Tick
from pipeline_lib.sources.base import SourceError
from pipeline_lib.sources.news_simulator import NewsConfig, moves_between

SESSION_SECONDS = 6.5 * 3600
TRADING_SECONDS_PER_YEAR = 252 * SESSION_SECONDS
CHUNK_STEPS = 512


@dataclass(frozen=True)
class SymbolSpec:
    """One simulated stock: start price, annual drift and volatility, sector, volume."""

    symbol: str
    price: float
    mu: float = 0.07
    sigma: float = 0.25
    sector: str = "tech"
    daily_volume: float = 10_000_000


# Twelve large caps across six sectors. Kafka's default partitioner (murmur2 of the
# symbol key) puts four of them on each of 3 partitions and two on each of 6, so every
# partition carries a share of the ticks and no consumer in a group of 3 (or 6) idles.
DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("AAPL", 190.00, 0.08, 0.28, "tech", 55_000_000),
    SymbolSpec("MSFT", 410.00, 0.08, 0.25, "tech", 22_000_000),
    SymbolSpec("GOOGL", 165.00, 0.07, 0.30, "tech", 25_000_000),
    SymbolSpec("META", 500.00, 0.09, 0.35, "tech", 15_000_000),
    SymbolSpec("NVDA", 120.00, 0.12, 0.50, "tech", 250_000_000),
    SymbolSpec("AMZN", 185.00, 0.08, 0.30, "consumer", 40_000_000),
    SymbolSpec("KO", 62.00, 0.05, 0.15, "consumer", 13_000_000),
    SymbolSpec("JPM", 195.00, 0.06, 0.22, "finance", 9_000_000),
    SymbolSpec("XOM", 115.00, 0.05, 0.24, "energy", 15_000_000),
    SymbolSpec("JNJ", 155.00, 0.05, 0.16, "health", 7_000_000),
    SymbolSpec("PFE", 28.00, 0.03, 0.22, "health", 35_000_000),
    SymbolSpec("CAT", 340.00, 0.07, 0.28, "industrial", 2_500_000),
)

Clock = Literal["always_open", "market"]


def symbol_specs(symbols: Sequence[str] | None) -> tuple[SymbolSpec, ...]:
    """Specs for the named symbols: defaults where known, generic tech stocks otherwise."""
    if not symbols:
        return DEFAULT_SYMBOLS
    known = {s.symbol: s for s in DEFAULT_SYMBOLS}
    specs = []
    for index, name in enumerate(symbols):
        name = name.strip().upper()
        specs.append(known.get(name) or SymbolSpec(name, 50.0 + 25.0 * index))
    return tuple(specs)


@dataclass(frozen=True)
class SimulatorConfig:
    """Parameters of the simulation; the defaults give realistic large-cap behaviour."""

    symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS
    seed: int | None = None
    interval_s: float = 1.0
    clock: Clock = "always_open"
    start: datetime | None = None
    same_sector_correlation: float = 0.6
    cross_sector_correlation: float = 0.2
    correlation: tuple[tuple[float, ...], ...] | None = None
    jumps: bool = True
    jump_intensity: float = 0.5
    jump_mean: float = -0.03
    jump_sd: float = 0.06
    volume_shape: float = 4.0
    # price moves of material news (with jumps; None: no news moves)
    news: NewsConfig | None = field(default_factory=NewsConfig)

    def correlation_matrix(self) -> np.ndarray:
        """The configured matrix, or one built from sectors."""
        if self.correlation is not None:
            matrix = np.asarray(self.correlation, dtype=float)
        else:
            sectors = [s.sector for s in self.symbols]
            matrix = np.array(
                [
                    [
                        1.0
                        if i == j
                        else self.same_sector_correlation
                        if a == b
                        else self.cross_sector_correlation
                        for j, b in enumerate(sectors)
                    ]
                    for i, a in enumerate(sectors)
                ]
            )
        n = len(self.symbols)
        if matrix.shape != (n, n) or not np.allclose(matrix, matrix.T):
            raise SourceError(f"correlation must be a symmetric {n}x{n} matrix")
        return matrix


def u_shape(u: np.ndarray) -> np.ndarray:
    """Intraday volume multiplier at session fraction ``u`` (mean 1 over the session)."""
    raw = 1 + 1.5 * np.exp(-u / 0.05) + 0.8 * np.exp(-(1 - u) / 0.05)
    mean = 1 + 1.5 * 0.05 * (1 - np.exp(-1 / 0.05)) + 0.8 * 0.05 * (1 - np.exp(-1 / 0.05))
    return raw / mean


class MarketSimulator:
    """Iterator of simulated bars. ``MarketSimulator(SimulatorConfig(seed=7))``."""

    source = "simulator"

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        if not self.config.symbols:
            raise SourceError("the simulator needs at least one symbol")
        if self.config.interval_s <= 0:
            raise SourceError("interval_s must be positive")
        self.seed = self.config.seed if self.config.seed is not None else secrets.randbits(32)
        self.start = self._start_time()
        # Event ids carry the run (seed and start): replaying a run repeats its ids
        # (de-duplicated downstream), while two different runs never collide.
        self.tag = f"sim{self.seed}-{self.start:%Y%m%dT%H%M%S}"
        try:
            self.cholesky = np.linalg.cholesky(self.config.correlation_matrix())
        except np.linalg.LinAlgError:
            raise SourceError("the correlation matrix is not positive definite") from None

    def _start_time(self) -> datetime:
        start = self.config.start or datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise SourceError("start must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
        return start.astimezone(UTC)

    # --- time grid ----------------------------------------------------------------

    def _always_open_grid(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks of (epoch µs, session fraction) with back-to-back 6.5 h sessions."""
        step_us = round(self.config.interval_s * 1_000_000)
        start_us = int(self.start.timestamp() * 1_000_000)
        k = 0
        while True:
            offsets = np.arange(k, k + CHUNK_STEPS, dtype=np.int64) * step_us
            fraction = (offsets / 1_000_000 % SESSION_SECONDS) / SESSION_SECONDS
            yield start_us + offsets, fraction
            k += CHUNK_STEPS

    def _market_grid(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks of (epoch µs, session fraction) inside NYSE sessions only."""
        import exchange_calendars as xcals
        import pandas as pd

        step_us = round(self.config.interval_s * 1_000_000)
        cursor = self.start
        while True:
            calendar = xcals.get_calendar(
                "XNYS",
                start=(cursor - timedelta(days=5)).date().isoformat(),
                end=(cursor + timedelta(days=400)).date().isoformat(),
            )
            sessions = calendar.sessions_in_range(
                pd.Timestamp(cursor.date()), calendar.last_session
            )
            for session in sessions:
                open_us = int(calendar.session_open(session).timestamp() * 1_000_000)
                close_us = int(calendar.session_close(session).timestamp() * 1_000_000)
                first = max(open_us, int(cursor.timestamp() * 1_000_000))
                if first >= close_us:
                    continue
                first = open_us + -(-(first - open_us) // step_us) * step_us
                times = np.arange(first, close_us, step_us, dtype=np.int64)
                fraction = (times - open_us) / (close_us - open_us)
                for i in range(0, len(times), CHUNK_STEPS):
                    yield times[i : i + CHUNK_STEPS], fraction[i : i + CHUNK_STEPS]
            cursor = calendar.session_close(calendar.last_session).to_pydatetime() + timedelta(
                seconds=1
            )

    # --- the stream ---------------------------------------------------------------

    def __iter__(self) -> Iterator[Tick]:
        config = self.config
        rng = np.random.default_rng(self.seed)
        specs = config.symbols
        symbols = [s.symbol for s in specs]
        n = len(specs)
        dt = config.interval_s / TRADING_SECONDS_PER_YEAR
        mu = np.array([s.mu for s in specs])
        sigma = np.array([s.sigma for s in specs])
        lam = config.jump_intensity if config.jumps else 0.0
        kappa = np.exp(config.jump_mean + 0.5 * config.jump_sd**2) - 1
        drift = (mu - 0.5 * sigma**2 - lam * kappa) * dt
        vol = sigma * np.sqrt(dt)
        per_step_volume = np.array([s.daily_volume for s in specs]) * (
            config.interval_s / SESSION_SECONDS
        )
        log_price = np.log([s.price for s in specs])
        grid = self._market_grid() if config.clock == "market" else self._always_open_grid()
        source, tag = self.source, self.tag
        news = config.news if config.jumps else None
        column = {symbol: j for j, symbol in enumerate(symbols)}
        moved_until = int(self.start.timestamp() * 1_000_000) - 1

        for times_us, fraction in grid:
            steps = len(times_us)
            shocks = rng.standard_normal((steps, n)) @ self.cholesky.T
            returns = drift + vol * shocks
            if lam > 0:
                counts = rng.poisson(lam * dt, (steps, n))
                jumps = counts * config.jump_mean + np.sqrt(counts) * config.jump_sd * (
                    rng.standard_normal((steps, n))
                )
                returns = returns + jumps
            if news is not None:
                # A story's move lands on the first bar at or after its time.
                last = int(times_us[-1])
                for event in moves_between(self.seed, symbols, moved_until, last, news):
                    step = int(np.searchsorted(times_us, event.time_us, "left"))
                    returns[step, column[event.symbol]] += event.sign * event.size
                moved_until = last
            path = log_price + np.cumsum(returns, axis=0)
            closes = np.exp(path)
            opens = np.exp(np.vstack([log_price, path[:-1]]))
            log_price = path[-1]
            up = np.exp(np.abs(rng.standard_normal((steps, n))) * vol * 0.5)
            down = np.exp(-np.abs(rng.standard_normal((steps, n))) * vol * 0.5)
            highs = np.maximum(opens, closes) * up
            lows = np.minimum(opens, closes) * down
            expected = per_step_volume * u_shape(fraction)[:, None]
            volumes = rng.gamma(config.volume_shape, expected / config.volume_shape)

            o = np.maximum(np.round(opens, 2), 0.01).tolist()
            h = np.maximum(np.round(highs, 2), 0.01).tolist()
            lo = np.maximum(np.round(lows, 2), 0.01).tolist()
            c = np.maximum(np.round(closes, 2), 0.01).tolist()
            v = np.rint(volumes).astype(np.int64).tolist()
            micros = times_us.tolist()
            stamps = [datetime.fromtimestamp(us / 1_000_000, UTC) for us in micros]
            for i in range(steps):
                ts, us = stamps[i], micros[i]
                oi, hi, li, ci, vi = o[i], h[i], lo[i], c[i], v[i]
                for j in range(n):
                    yield Tick(
                        f"{tag}:{symbols[j]}:{us}",
                        symbols[j],
                        ts,
                        oi[j],
                        hi[j],
                        li[j],
                        ci[j],
                        vi[j],
                        source,
                    )
