"""The second record type: a news story about one symbol, with its sentiment score.

Same rules as ticks (:mod:`pipeline_lib.records.schema`): one field table drives the record,
its JSON, the BigQuery columns and the row encoder; :func:`decode` turns untrusted
bytes into a :class:`News` or an :class:`~pipeline_lib.records.schema.InvalidRecord` with a
reason (the dead-letter topic keeps it). One story about three tickers is three
records, one per symbol, each with the provider's score for that symbol.

``news_id`` is stable: ``<source tag>:<symbol>:<16 hex of a hash of the story>`` (its
URL, or its time and headline), so a replayed feed repeats its ids and the dedup view
shows each story once. A simulator run shares its tag with the ticks of the same
seed and start, so the analysis can pick the news of the run it plots.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Any, NamedTuple

from pipeline_lib.records.schema import (
    Field,
    InvalidRecord,
    _check_symbol,
    _timestamp,
    check_fields,
    check_id,
    decode_json,
    record_codec,
)

NEWS_SOURCES = frozenset({"simulator", "alphavantage"})
LABELS = frozenset({"positive", "negative", "neutral"})
# Bounds (stated in docs/delivery.md): a headline is a line, not an article.
MAX_HEADLINE_CHARS = 1_000
MAX_SUMMARY_CHARS = 10_000
MAX_TEXT_CHARS = 2_048  # url, publisher

NEWS_FIELDS: tuple[Field, ...] = (
    Field("news_id", "text", True, "stable id: <source>:<symbol>:<hash of the story>"),
    Field("symbol", "text", True, "ticker symbol the story is about"),
    Field("ts", "timestamp", True, "when the story was published (UTC)"),
    Field("headline", "text", True, "the headline, one line"),
    Field("sentiment", "score", True, "our score: VADER + finance lexicon, compound in [-1, 1]"),
    Field("sentiment_label", "text", True, "positive, negative or neutral (from sentiment)"),
    Field("source", "text", True, "simulator or alphavantage"),
    Field("summary", "text", False, "the provider's summary, if any"),
    Field("publisher", "text", False, "who published it (Reuters, Benzinga, ...)"),
    Field("url", "text", False, "link to the story"),
    Field("provider_sentiment", "score", False, "the provider's score for this symbol, [-1, 1]"),
    Field("relevance", "score", False, "the provider's relevance of the story to the symbol"),
    Field("produced_at", "timestamp", False, "when the producer sent it"),
)
NEWS_FIELD_NAMES = tuple(f.name for f in NEWS_FIELDS)
_REQUIRED = frozenset(f.name for f in NEWS_FIELDS if f.required)
_ALL = frozenset(NEWS_FIELD_NAMES)
_LIMITS = {"headline": MAX_HEADLINE_CHARS, "summary": MAX_SUMMARY_CHARS}


class News(NamedTuple):
    """One story about one symbol; times are timezone-aware UTC datetimes."""

    news_id: str
    symbol: str
    ts: datetime
    headline: str
    sentiment: float
    sentiment_label: str
    source: str
    summary: str | None = None
    publisher: str | None = None
    url: str | None = None
    provider_sentiment: float | None = None
    relevance: float | None = None
    produced_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in :data:`NEWS_FIELDS` order (times via :func:`iso`).

        Generated from the field table at import, as the tick's is.
        """
        raise NotImplementedError  # replaced by record_codec below


if News._fields != NEWS_FIELD_NAMES:  # pragma: no cover - a guard for maintainers
    raise ImportError("News and NEWS_FIELDS disagree")


def make_news_id(source_tag: str, symbol: str, story: str) -> str:
    """Stable id of ``story`` (its URL, or time and headline) about ``symbol``."""
    digest = hashlib.sha256(story.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{source_tag}:{symbol}:{digest}"


def _score(value: Any, field: str, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecord(f"expected a number, got {type(value).__name__} {value!r}", field)
    number = float(value)
    if not (math.isfinite(number) and low <= number <= 1.0):
        raise InvalidRecord(f"{number} is outside [{low:g}, 1]", field)
    return number


def _line(value: Any, field: str, limit: int, required: bool) -> str | None:
    if value is None and not required:
        return None
    if type(value) is not str:
        raise InvalidRecord(f"expected a string, got {type(value).__name__}", field)
    text = " ".join(value.split())  # one line: newlines and runs of spaces collapse
    if not text:
        if required:
            raise InvalidRecord("is empty", field)
        return None
    if len(text) > limit:
        raise InvalidRecord(f"{len(text):,} characters, more than {limit:,}", field)
    if not text.isprintable():
        raise InvalidRecord("contains control characters", field)
    return text


def parse_news(data: Any) -> News:
    """Validate an untrusted mapping (decoded JSON, a provider's item) into News."""
    check_fields(data, _REQUIRED, _ALL)
    news_id = check_id(data["news_id"], "news_id")
    symbol = _check_symbol(data["symbol"])
    source = data["source"]
    if type(source) is not str or source not in NEWS_SOURCES:
        raise InvalidRecord(f"{str(source)[:40]!r} is not one of {sorted(NEWS_SOURCES)}", "source")
    label = data["sentiment_label"]
    if type(label) is not str or label not in LABELS:
        raise InvalidRecord(
            f"{str(label)[:40]!r} is not one of {sorted(LABELS)}", "sentiment_label"
        )
    values: dict[str, Any] = {}
    for name in ("summary", "publisher", "url"):
        values[name] = _line(data.get(name), name, _LIMITS.get(name, MAX_TEXT_CHARS), False)
    for name, low in (("provider_sentiment", -1.0), ("relevance", 0.0)):
        raw = data.get(name)
        values[name] = None if raw is None else _score(raw, name, low)
    produced_at = data.get("produced_at")
    return News(
        news_id=news_id,
        symbol=symbol,
        ts=_timestamp(data["ts"], "ts"),
        headline=_line(data["headline"], "headline", MAX_HEADLINE_CHARS, True),  # type: ignore[arg-type]
        sentiment=_score(data["sentiment"], "sentiment", -1.0),
        sentiment_label=label,
        source=source,
        produced_at=None if produced_at is None else _timestamp(produced_at, "produced_at"),
        **values,
    )


encode = record_codec(News, NEWS_FIELDS)


def decode(payload: bytes | None) -> News:
    """Parse a Kafka message value; any failure is an :class:`InvalidRecord`."""
    return decode_json(payload, parse_news, "news")


def scored(
    news_id: str,
    symbol: str,
    ts: datetime,
    headline: str,
    source: str,
    **optional: Any,
) -> News:
    """A validated News whose sentiment is scored here, from the headline."""
    from pipeline_lib.records.sentiment import score

    sentiment = score(headline)
    return parse_news(
        {
            "news_id": news_id,
            "symbol": symbol,
            "ts": ts,
            "headline": headline,
            "sentiment": sentiment.compound,
            "sentiment_label": sentiment.label,
            "source": source,
            **{k: v for k, v in optional.items() if v is not None},
        }
    )
