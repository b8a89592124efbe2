"""AlphaVantage: intraday bars, global quotes and news, with a cache and a daily budget.

The free tier allows 25 requests a day, so every answer is cached on disk (per
function, symbol, interval and US/Eastern trading day) and a re-run replays the
cache instead of spending calls; a local counter refuses the 26th call before
AlphaVantage has to. The key comes from ``ALPHAVANTAGE_API_KEY`` only and is never
logged: URLs in messages have it masked.

AlphaVantage reports errors with HTTP 200 and a JSON body; each kind becomes its own
exception: ``Error Message`` → :class:`AlphaVantageError`, ``Information`` about
premium endpoints → :class:`PremiumEndpointError`, ``Information``/``Note`` about
limits → :class:`RateLimitError`.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError
from pipeline_lib.core.secrets import mask, register_secret
from pipeline_lib.records.news import News, make_news_id, scored
from pipeline_lib.records.schema import (
    SYMBOL_PATTERN,
    InvalidRecord,
    Tick,
    make_event_id,
    parse_tick,
)

log = logging.getLogger(__name__)
EASTERN = ZoneInfo("America/New_York")
# NEWS_SENTIMENT's ``time_published`` (20240102T143000) carries no zone and the
# documentation names none; we read it as US/Eastern like the rest of AlphaVantage's
# answers (intraday "6. Time Zone": "US/Eastern"). ``news_zone`` changes it.
NEWS_TIME_ZONE = "US/Eastern"
INTERVALS = ("1min", "5min", "15min", "30min", "60min")
FREE_TIER_DAILY_CALLS = 25


class AlphaVantageError(PipelineError):
    """AlphaVantage refused the request (bad symbol, bad function, bad key...).

    Like every :class:`PipelineError`, its message has the key masked, whatever the
    server echoed back.
    """


class MissingApiKey(AlphaVantageError):
    """No key configured."""


class RateLimitError(AlphaVantageError):
    """The daily or per-minute allowance is used up."""


class PremiumEndpointError(AlphaVantageError):
    """The request needs a paid plan."""


def raise_for_error_body(body: Any, key: str | None = None) -> None:
    """Turn AlphaVantage's HTTP-200 error bodies into exceptions."""
    register_secret(key)
    if not isinstance(body, dict):
        raise AlphaVantageError(f"unexpected answer (not a JSON object): {str(body)[:200]}")
    if "Error Message" in body:
        raise AlphaVantageError(
            f"AlphaVantage: {str(body['Error Message'])[:500]} (check the symbol and function)"
        )
    for field in ("Information", "Note"):
        if field in body:
            text = str(body[field])[:500]
            if "premium" in text.lower():
                raise PremiumEndpointError(
                    f"AlphaVantage: {text} (this request needs a premium plan; use "
                    "outputsize=compact or another function)"
                )
            raise RateLimitError(
                f"AlphaVantage: {text} (wait until tomorrow, or replay the cached answers; "
                "the simulator and CSV sources need no key)"
            )


class AlphaVantageClient:
    """Small HTTP client: cache first, then a budgeted call."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str = "https://www.alphavantage.co/query",
        cache_dir: Path | None = None,
        daily_limit: int = FREE_TIER_DAILY_CALLS,
        timeout: float = 30.0,
    ) -> None:
        register_secret(api_key)
        self.api_key = api_key
        self.base_url = base_url
        self.cache_dir = cache_dir
        self.daily_limit = daily_limit
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AlphaVantageClient:
        return cls(
            settings.alphavantage_api_key,
            settings.alphavantage_base_url,
            cache_dir=settings.home / "cache" / "alphavantage",
            **kwargs,
        )

    # --- budget -------------------------------------------------------------------

    @staticmethod
    def _today() -> str:
        return datetime.now(EASTERN).date().isoformat()

    def _usage_path(self) -> Path | None:
        return self.cache_dir / "usage.json" if self.cache_dir else None

    def calls_today(self) -> int:
        path = self._usage_path()
        if not path or not path.exists():
            return 0
        try:
            return int(json.loads(path.read_text()).get(self._today(), 0))
        except (ValueError, OSError):
            return 0

    def _count_call(self) -> None:
        path = self._usage_path()
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({self._today(): self.calls_today() + 1}))

    # --- requests -----------------------------------------------------------------

    def fetch(self, params: dict[str, str], use_cache: bool = True) -> dict[str, Any]:
        """The JSON answer for ``params`` (without the key), from cache when possible."""
        cache_file = None
        if self.cache_dir and use_cache:
            name = "_".join(f"{k}-{v}" for k, v in sorted(params.items()))
            safe = re.sub(r"[^A-Za-z0-9_.=-]", "_", name)
            cache_file = self.cache_dir / self._today() / f"{safe}.json"
            if cache_file.exists():
                return json.loads(cache_file.read_text())
        if not self.api_key:
            raise MissingApiKey(
                "ALPHAVANTAGE_API_KEY is not set. Get a free key at alphavantage.co, then "
                "`export ALPHAVANTAGE_API_KEY=...` before starting Jupyter or the command "
                "(never put it in a notebook). The simulator and CSV sources need no key."
            )
        if self.calls_today() >= self.daily_limit:
            raise RateLimitError(
                f"{self.calls_today()} AlphaVantage calls made today (limit {self.daily_limit}); "
                "cached answers are replayed, new ones wait until tomorrow (US/Eastern)."
            )
        query = urllib.parse.urlencode({**params, "apikey": self.api_key})
        url = f"{self.base_url}?{query}"
        shown = mask(url)
        self._count_call()
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as error:
            raise AlphaVantageError(f"HTTP {error.code} from {shown}; try again later") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            # URLError, timeouts, connection resets, truncated answers: all "network".
            reason = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
            raise AlphaVantageError(
                f"could not reach {shown}: {reason}. Check the network and try again."
            ) from None
        try:
            body = json.loads(raw)
        except ValueError:
            raise AlphaVantageError(f"answer is not JSON: {raw[:200]!r}") from None
        raise_for_error_body(body, self.api_key)
        body["_fetched_at"] = datetime.now(UTC).isoformat()
        if cache_file:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps(body))
        return body

    def intraday(self, symbol: str, interval: str = "5min", outputsize: str = "compact") -> dict:
        _check_symbol(symbol)
        if interval not in INTERVALS:
            raise AlphaVantageError(f"interval {interval!r}: use one of {', '.join(INTERVALS)}")
        return self.fetch(
            {
                "function": "TIME_SERIES_INTRADAY",
                "symbol": symbol,
                "interval": interval,
                "outputsize": outputsize,
                "datatype": "json",
            }
        )

    def news_sentiment(self, tickers: Sequence[str], limit: int = 50) -> dict:
        """NEWS_SENTIMENT for ``tickers``, newest first (one call for all of them)."""
        for ticker in tickers:
            _check_symbol(ticker)
        if not 1 <= limit <= 1000:
            raise AlphaVantageError(f"limit {limit}: AlphaVantage returns 1 to 1000 stories")
        return self.fetch(
            {
                "function": "NEWS_SENTIMENT",
                "tickers": ",".join(tickers),
                "limit": str(limit),
                "sort": "LATEST",
            }
        )

    def global_quote(self, symbol: str, use_cache: bool = True) -> dict:
        _check_symbol(symbol)
        return self.fetch(
            {"function": "GLOBAL_QUOTE", "symbol": symbol, "datatype": "json"}, use_cache
        )


def _check_symbol(symbol: str) -> None:
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise InvalidRecord(f"{symbol!r} is not a ticker symbol", "symbol")


def _value(entry: dict, *names: str) -> str:
    for name in names:
        if name in entry:
            return entry[name]
    raise AlphaVantageError(f"field {names[0]!r} missing in {sorted(entry)}")


def _unexpected(error: Exception) -> AlphaVantageError:
    return AlphaVantageError(
        f"unexpected answer from AlphaVantage ({type(error).__name__}: {str(error)[:200]})"
    )


def parse_intraday(body: dict, symbol: str) -> list[Tick]:
    """Bars of a TIME_SERIES_INTRADAY answer, oldest first (AlphaVantage sends newest first)."""
    try:
        return _parse_intraday(body, symbol)
    except (InvalidRecord, AlphaVantageError):
        raise
    except (ValueError, TypeError, AttributeError, KeyError, LookupError) as error:
        raise _unexpected(error) from None


def _parse_intraday(body: dict, symbol: str) -> list[Tick]:
    raise_for_error_body(body)
    series_key = next((k for k in body if k.startswith("Time Series")), None)
    if series_key is None:
        raise AlphaVantageError(f"no 'Time Series' in the answer (keys: {sorted(body)})")
    meta = body.get("Meta Data", {})
    zone = ZoneInfo(meta.get("6. Time Zone", "US/Eastern"))
    ticks = []
    for stamp, entry in body[series_key].items():
        when = datetime.fromisoformat(stamp).replace(tzinfo=zone).astimezone(UTC)
        ticks.append(
            parse_tick(
                {
                    "event_id": make_event_id("av", symbol, when),
                    "symbol": symbol,
                    "ts": when,
                    "open": float(_value(entry, "1. open")),
                    "high": float(_value(entry, "2. high")),
                    "low": float(_value(entry, "3. low")),
                    "close": float(_value(entry, "4. close")),
                    "volume": int(_value(entry, "5. volume")),
                    "source": "alphavantage",
                }
            )
        )
    return sorted(ticks, key=lambda t: t.ts)


def parse_global_quote(body: dict, fetched_at: datetime | None = None) -> Tick:
    """The GLOBAL_QUOTE answer as one bar of the day so far, stamped at fetch time."""
    try:
        return _parse_global_quote(body, fetched_at)
    except (InvalidRecord, AlphaVantageError):
        raise
    except (ValueError, TypeError, AttributeError, KeyError, LookupError) as error:
        raise _unexpected(error) from None


def _parse_global_quote(body: dict, fetched_at: datetime | None) -> Tick:
    raise_for_error_body(body)
    if fetched_at is None and "_fetched_at" in body:
        fetched_at = datetime.fromisoformat(body["_fetched_at"])
    quote = body.get("Global Quote")
    if not quote:
        raise AlphaVantageError("empty 'Global Quote' (unknown symbol?)")
    symbol = _value(quote, "01. symbol")
    when = (fetched_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    price = float(_value(quote, "05. price"))
    return parse_tick(
        {
            "event_id": make_event_id("avq", symbol, when),
            "symbol": symbol,
            "ts": when,
            "open": float(_value(quote, "02. open")),
            "high": max(float(_value(quote, "03. high")), price),
            "low": min(float(_value(quote, "04. low")), price),
            "close": price,
            "volume": int(_value(quote, "06. volume")),
            "source": "alphavantage",
        }
    )


class AlphaVantageSource:
    """Iterator of Ticks from AlphaVantage: intraday bars, or polled global quotes."""

    source = "alphavantage"

    def __init__(
        self,
        client: AlphaVantageClient,
        symbols: list[str],
        function: str = "intraday",
        interval: str = "5min",
        poll_seconds: float = 60.0,
    ) -> None:
        if function not in {"intraday", "quote"}:
            raise AlphaVantageError(f"function {function!r}: use 'intraday' or 'quote'")
        self.client = client
        self.symbols = [s.upper() for s in symbols]
        self.function = function
        self.interval = interval
        self.poll_seconds = poll_seconds

    def __iter__(self) -> Iterator[Tick]:
        if self.function == "intraday":
            bars = []
            for symbol in self.symbols:
                bars.extend(parse_intraday(self.client.intraday(symbol, self.interval), symbol))
            yield from sorted(bars, key=lambda t: (t.ts, t.symbol))
            return
        first_round = True
        while True:  # quotes: poll until the caller's bound stops us
            for symbol in self.symbols:
                body = self.client.global_quote(symbol, use_cache=first_round)
                yield parse_global_quote(body)
            first_round = False
            time.sleep(self.poll_seconds)


def _published(text: str, zone: ZoneInfo) -> datetime:
    for layout in ("%Y%m%dT%H%M%S", "%Y%m%dT%H%M"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=zone).astimezone(UTC)
        except ValueError:
            continue
    raise InvalidRecord(f"time_published {text[:40]!r} is not YYYYMMDDTHHMMSS", "ts")


def parse_news_feed(
    body: dict,
    tickers: Sequence[str] | None = None,
    min_relevance: float = 0.3,
    zone: str = NEWS_TIME_ZONE,
) -> tuple[list[News], list[str]]:
    """A NEWS_SENTIMENT answer as News, oldest first: one record per (story, ticker)
    with ``relevance_score >= min_relevance`` (and in ``tickers`` when given), scored
    by our lexicon, with AlphaVantage's own ``ticker_sentiment_score`` beside it.

    Returns the records and, for each story or ticker entry that could not be used
    (empty title, malformed time, a score that is not a number), the reason: one bad
    story never costs the others. Non-equity tickers (``CRYPTO:BTC``, ``FOREX:USD``)
    are left out silently.
    """
    raise_for_error_body(body)
    feed = body.get("feed")
    if not isinstance(feed, list):
        raise AlphaVantageError(f"no 'feed' list in the news answer (keys: {sorted(body)[:10]})")
    wanted = {t.upper() for t in tickers} if tickers else None
    tz = ZoneInfo(zone)
    records: list[News] = []
    problems: list[str] = []
    for number, item in enumerate(feed):
        try:
            if not isinstance(item, dict):
                raise InvalidRecord(f"story is a {type(item).__name__}, not an object")
            ts = _published(str(item.get("time_published", "")), tz)
            title = item.get("title")
            story = str(item.get("url") or f"{item.get('time_published')}:{title}")
            entries = item.get("ticker_sentiment") or []
            if not isinstance(entries, list):
                raise InvalidRecord("ticker_sentiment is not a list")
            for entry in entries:
                ticker = str(entry.get("ticker", "")).upper()
                if not SYMBOL_PATTERN.fullmatch(ticker) or (wanted and ticker not in wanted):
                    continue
                relevance = float(entry.get("relevance_score"))
                if relevance < min_relevance:
                    continue
                records.append(
                    scored(
                        make_news_id("avn", ticker, story),
                        ticker,
                        ts,
                        title,  # type: ignore[arg-type]
                        "alphavantage",
                        summary=item.get("summary"),
                        publisher=item.get("source"),
                        url=item.get("url"),
                        provider_sentiment=float(entry.get("ticker_sentiment_score")),
                        relevance=relevance,
                    )
                )
        except (InvalidRecord, ValueError, TypeError, AttributeError) as error:
            problems.append(f"story {number}: {error}"[:300])
    return sorted(records, key=lambda n: (n.ts, n.symbol)), problems


class AlphaVantageNewsSource:
    """Iterator of News from NEWS_SENTIMENT: the latest ``limit`` stories about
    ``symbols``, oldest first (one call, cached for the day like prices)."""

    source = "alphavantage"

    def __init__(
        self,
        client: AlphaVantageClient,
        symbols: Sequence[str],
        limit: int = 50,
        min_relevance: float = 0.3,
        zone: str = NEWS_TIME_ZONE,
    ) -> None:
        self.client = client
        self.symbols = [s.upper() for s in symbols]
        self.limit = limit
        self.min_relevance = min_relevance
        self.zone = zone
        self.problems: list[str] = []

    def __iter__(self) -> Iterator[News]:
        body = self.client.news_sentiment(self.symbols, self.limit)
        try:
            records, self.problems = parse_news_feed(
                body, self.symbols, self.min_relevance, self.zone
            )
        except (InvalidRecord, AlphaVantageError):
            raise
        except (ValueError, TypeError, AttributeError, KeyError, LookupError) as error:
            raise _unexpected(error) from None
        for problem in self.problems:
            log.warning("AlphaVantage news: skipped %s", problem)
        yield from records
