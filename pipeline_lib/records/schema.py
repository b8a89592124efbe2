"""The tick (an OHLCV bar), its validation and JSON form; and what every record type
shares: the field table's kinds (:data:`KINDS`: Python, BigQuery and Arrow types),
timestamps (:func:`iso`) and the encoder built from a field table (:func:`record_codec`).

Every price source yields :class:`Tick`; Kafka carries its JSON (:func:`encode`); the
consumer parses untrusted bytes back with :func:`decode`, which raises
:class:`InvalidRecord` with a reason a human can act on (the dead-letter topic keeps
that reason next to the original bytes).

``event_id`` is stable: ``<source tag>:<symbol>:<event time in µs>``, so replaying
the same data produces the same ids and the sinks can drop duplicates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import orjson

from pipeline_lib.core.errors import PipelineError

T = TypeVar("T")
SOURCES = frozenset({"simulator", "csv", "alphavantage"})

# Exchange symbols as data vendors spell them: AAPL, BRK.B, BRK-B, ^GSPC, EURUSD=X.
# Always used with fullmatch: "AAPL\n" is not a symbol.
SYMBOL_PATTERN = re.compile(r"[A-Z0-9^][A-Z0-9.\-=^]{0,14}")
MAX_EVENT_ID_LENGTH = 128
# Bounds that keep accepted records safe downstream (stated in docs/delivery.md):
# 100 billion shares per bar is ~10x the busiest stock-day on record, and 92 million
# such bars still sum inside BigQuery's INT64; prices up to 1e9 keep close x volume
# and its sums finite in FLOAT64; event times between 1900 and 2100 (UTC).
MAX_VOLUME = 10**11
MAX_PRICE = 1e9
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class Field(NamedTuple):
    """One column of the record: its name, kind, whether it may be null, what it means."""

    name: str
    kind: str  # a key of KINDS
    required: bool
    description: str


class Kind(NamedTuple):
    """How a kind of field is typed in Python, in BigQuery and in Arrow."""

    python: type
    bigquery: str
    arrow: str  # a pyarrow type alias; "timestamp" is µs in UTC (see arrow_type)


# The one type table: every field's kind maps to its Python, BigQuery and Arrow type
# here (validation is per kind in parse_tick / parse_news; JSON encoding of every
# timestamp goes through iso()).
KINDS: dict[str, Kind] = {
    "text": Kind(str, "STRING", "string"),
    "timestamp": Kind(datetime, "TIMESTAMP", "timestamp"),
    "price": Kind(float, "FLOAT64", "float64"),
    "count": Kind(int, "INT64", "int64"),
    "score": Kind(float, "FLOAT64", "float64"),
    # no record field has it: a newer contract's field of true/false values gets a BOOL
    # column (pipeline_lib.sinks.bigquery.evolution)
    "boolean": Kind(bool, "BOOL", "bool"),
}


def arrow_type(kind: str) -> Any:
    """The pyarrow type of a field kind (pyarrow is imported only when asked)."""
    import pyarrow as pa

    alias = KINDS[kind].arrow
    return pa.timestamp("us", tz="UTC") if alias == "timestamp" else pa.type_for_alias(alias)


# The tick, field by field, in JSON and table column order. The record type, the
# JSON encoding, the BigQuery schema and row encoder all derive from this table.
TICK_FIELDS: tuple[Field, ...] = (
    Field("event_id", "text", True, "stable id: <source>:<symbol>:<event time µs>"),
    Field("symbol", "text", True, "ticker symbol"),
    Field("ts", "timestamp", True, "event time (UTC), start of the bar"),
    Field("open", "price", True, "open price"),
    Field("high", "price", True, "high price"),
    Field("low", "price", True, "low price"),
    Field("close", "price", True, "close price"),
    Field("adj_close", "price", False, "adjusted close, where the source gives one"),
    Field("volume", "count", True, "shares traded in the bar"),
    Field("source", "text", True, "simulator, csv or alphavantage"),
    Field("produced_at", "timestamp", False, "when the producer sent it"),
)
# Where each landed row came from, added by the sinks.
LANDING_FIELDS: tuple[Field, ...] = (
    Field("ingested_at", "timestamp", True, "when the consumer closed the batch"),
    Field("kafka_topic", "text", True, "Kafka topic it was read from"),
    Field("kafka_partition", "count", True, "Kafka partition"),
    Field("kafka_offset", "count", True, "Kafka offset"),
    Field("extra", "text", False, "fields the consumer's contract does not know (JSON)"),
)
FIELDS = tuple(f.name for f in TICK_FIELDS)
REQUIRED_FIELDS = frozenset(f.name for f in TICK_FIELDS if f.required)


class InvalidRecord(PipelineError, ValueError):
    """A record that must not enter the pipeline. ``reason`` says why, ``field`` where."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.reason = reason
        self.field = field


class UnknownFields(InvalidRecord):
    """A record with fields its type does not know (``names``): a newer contract's. Not
    a dead letter by itself: the tolerant reader (:meth:`Stream.read
    <pipeline_lib.records.streams.Stream.read>`) keeps them beside the record."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"unknown field(s): {', '.join(names)[:200]}")
        self.names = names


class Tick(NamedTuple):
    """One OHLCV bar of one symbol. Times are timezone-aware UTC datetimes.

    A NamedTuple: immutable like a frozen dataclass, but several times cheaper to
    build, which matters at hundreds of thousands of records per second.
    """

    event_id: str
    symbol: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    source: str
    adj_close: float | None = None
    produced_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in :data:`TICK_FIELDS` order (times via :func:`iso`).

        Generated from the field table at import (see :func:`compile_to_dict`).
        """
        raise NotImplementedError  # replaced below


def make_event_id(source_tag: str, symbol: str, ts: datetime) -> str:
    """Stable id of the bar of ``symbol`` at ``ts`` from ``source_tag``."""
    micros = int(ts.timestamp() * 1_000_000) if ts.tzinfo else None
    if micros is None:
        raise InvalidRecord("timestamp has no time zone", "ts")
    return f"{source_tag}:{symbol}:{micros}"


_JSON_OPTIONS = orjson.OPT_UTC_Z


def iso(value: datetime) -> str:
    """The one timestamp format: ISO 8601 in UTC with ``Z``, microseconds when not zero
    (``2024-01-02T14:30:00Z``, ``2024-01-02T14:30:00.000123Z``): orjson's own, so the
    encoder can hand it datetimes and this text is always the same."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return orjson.dumps(value, option=_JSON_OPTIONS)[1:-1].decode()


def _timestamp(value: Any, field: str) -> datetime:
    if type(value) is str:  # fast path: what encode() writes ("...Z" parses as UTC)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is UTC and EARLIEST <= parsed < LATEST:
            return parsed
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidRecord(f"not an ISO 8601 timestamp: {value!r}", field) from None
    else:
        raise InvalidRecord(f"expected an ISO 8601 string, got {type(value).__name__}", field)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidRecord(f"timestamp {value!r} has no time zone (use Z or +00:00)", field)
    try:
        parsed = parsed.astimezone(UTC)
    except (OverflowError, ValueError):  # e.g. 9999-12-31T23:59:59-01:00
        parsed = None
    if parsed is None or not EARLIEST <= parsed < LATEST:
        raise InvalidRecord(
            f"timestamp {str(value)[:40]!r} is outside {EARLIEST.year}-{LATEST.year} (UTC)", field
        )
    return parsed


def compile_to_dict(fields: tuple[Field, ...], raw_times: bool) -> Any:
    """A function giving a record's dict in ``fields`` order, written out from the
    field table (the same for every record type): a literal dict display is ~40 %
    faster than a loop over the table, and the encoder is on the hot path.
    ``raw_times`` keeps datetimes for orjson to format."""
    items = []
    for f in fields:
        value = f"self.{f.name}"
        if f.kind == "timestamp" and not raw_times:
            value = f"iso({value})" if f.required else f"(iso({value}) if {value} else None)"
        items.append(f"{f.name!r}: {value}")
    source = "def to_dict(self):\n    return {" + ", ".join(items) + "}\n"
    namespace: dict[str, Any] = {"iso": iso}
    exec(compile(source, "<pipeline_lib.records.schema.to_dict>", "exec"), namespace)
    return namespace["to_dict"]


def record_codec(record: type, fields: tuple[Field, ...]) -> Callable[..., bytes]:
    """Give ``record`` (a NamedTuple of ``fields``) its ``to_dict`` and return its
    encoder: compact UTF-8 JSON in field-table order, ``produced_at`` stamped if given.
    Every record type is encoded this way, so its bytes are the canonical form the GCS
    sink compares message values with."""
    if set(record._fields) != {f.name for f in fields}:  # type: ignore[attr-defined]
        raise ImportError(f"{record.__name__} and its field table disagree")
    doc = record.to_dict.__doc__  # type: ignore[attr-defined]
    record.to_dict = compile_to_dict(fields, raw_times=False)  # type: ignore[attr-defined]
    record.to_dict.__doc__ = doc  # type: ignore[attr-defined]
    for_json = compile_to_dict(fields, raw_times=True)

    def encode(value: Any, produced_at: datetime | None = None) -> bytes:
        data = for_json(value)
        if produced_at is not None:
            data["produced_at"] = produced_at
        return orjson.dumps(data, option=_JSON_OPTIONS)

    encode.__doc__ = f"The Kafka message value of a {record.__name__}: compact UTF-8 JSON."
    return encode


_INF = float("inf")
_ALL_FIELDS = frozenset(FIELDS)


def _price(value: Any, field: str) -> float:
    kind = type(value)
    # Exact float/int skip the isinstance checks (the hot path); bool is an int subclass.
    if (
        kind is not float
        and kind is not int
        and (kind is bool or not isinstance(value, int | float))
    ):
        raise InvalidRecord(f"expected a number, got {type(value).__name__} {value!r}", field)
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise InvalidRecord(f"price {str(value)[:30]} is above {MAX_PRICE:g}", field) from None
    if not 0 < number <= MAX_PRICE:  # also false for NaN
        if math.isnan(number) or math.isinf(number):
            raise InvalidRecord(f"{number} is not a finite price", field)
        if number > MAX_PRICE:
            raise InvalidRecord(f"price {number:g} is above {MAX_PRICE:g}", field)
        raise InvalidRecord(f"price must be positive, got {number}", field)
    return number


def _volume(value: Any) -> int:
    if type(value) is not int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRecord(f"volume must be a whole number, got {value!r}", "volume")
    if value < 0:
        raise InvalidRecord(f"volume must not be negative, got {value}", "volume")
    if value > MAX_VOLUME:
        raise InvalidRecord(f"volume {value} is above the bound {MAX_VOLUME:,}", "volume")
    return value


def _text(value: Any, field: str) -> str:
    if type(value) is not str:
        raise InvalidRecord(f"expected a string, got {type(value).__name__}", field)
    return value


def check_id(value: Any, field: str) -> str:
    """An event or story id: 1-128 printable characters, checked and never rewritten
    (it is what the dedup view keys on)."""
    value = _text(value, field)
    if not 0 < len(value) <= MAX_EVENT_ID_LENGTH or not value.isprintable():
        raise InvalidRecord(f"must be 1-{MAX_EVENT_ID_LENGTH} printable characters", field)
    return value


_known_symbols: set[str] = set()  # symbols that passed the pattern (bounded cache)
_new_tick = tuple.__new__  # NamedTuple's own __new__ is a Python function: 3x slower


def _check_symbol(symbol: Any) -> str:
    if type(symbol) is str and symbol in _known_symbols:
        return symbol
    symbol = _text(symbol, "symbol")
    if not symbol:
        raise InvalidRecord("symbol is empty", "symbol")
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise InvalidRecord(
            f"{symbol!r} is not a ticker symbol (1-15 of A-Z 0-9 . - = ^, upper case)", "symbol"
        )
    if len(_known_symbols) < 100_000:
        _known_symbols.add(symbol)
    return symbol


def check_fields(data: Any, required: frozenset[str], known: frozenset[str]) -> dict:
    """An untrusted value is a JSON object with every required field and no unknown
    one (the first checks of every record type's parser)."""
    if type(data) is not dict:
        raise InvalidRecord(f"expected a JSON object, got {type(data).__name__}")
    missing = sorted(required - data.keys())
    if missing:
        raise InvalidRecord(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(data.keys() - known)
    if unknown:
        raise UnknownFields(unknown)
    return data


def parse_tick(data: Any) -> Tick:
    """Validate an untrusted mapping (decoded JSON, a CSV row) into a Tick.

    The hot path of the consumer: written for speed (a few microseconds per record),
    every rule is still checked, each failure an :class:`InvalidRecord` with a reason.
    """
    if type(data) is not dict or len(data) > len(_ALL_FIELDS) or not _ALL_FIELDS.issuperset(data):
        check_fields(data, REQUIRED_FIELDS, _ALL_FIELDS)
    try:
        symbol = data["symbol"]
        event_id = data["event_id"]
        source = data["source"]
        open_, high, low, close = data["open"], data["high"], data["low"], data["close"]
        ts, volume = data["ts"], data["volume"]
    except KeyError:
        check_fields(data, REQUIRED_FIELDS, _ALL_FIELDS)
        raise InvalidRecord("missing fields") from None

    symbol = _check_symbol(symbol)
    event_id = check_id(event_id, "event_id")
    if type(source) is not str or source not in SOURCES:
        source = _text(source, "source")
        raise InvalidRecord(f"{source!r} is not one of {sorted(SOURCES)}", "source")

    open_ = _price(open_, "open")
    high = _price(high, "high")
    low = _price(low, "low")
    close = _price(close, "close")
    if low > high:
        raise InvalidRecord(f"{low} is above high {high}", "low")
    if not (low <= open_ <= high):
        raise InvalidRecord(f"open {open_} is outside [low {low}, high {high}]", "open")
    if not (low <= close <= high):
        raise InvalidRecord(f"close {close} is outside [low {low}, high {high}]", "close")
    adj_close = data.get("adj_close")
    produced_at = data.get("produced_at")
    return _new_tick(
        Tick,
        (
            event_id,
            symbol,
            _timestamp(ts, "ts"),
            open_,
            high,
            low,
            close,
            _volume(volume),
            source,
            None if adj_close is None else _price(adj_close, "adj_close"),
            None if produced_at is None else _timestamp(produced_at, "produced_at"),
        ),
    )


def validate(tick: Tick) -> Tick:
    """Re-check a Tick built in code (e.g. by a source) with the same rules as parsing."""
    data = tick.to_dict()
    data["ts"] = tick.ts
    data["produced_at"] = tick.produced_at
    return parse_tick(data)


encode = record_codec(Tick, TICK_FIELDS)


def record_parser(record: type, fields: tuple[Field, ...]) -> Callable[[Any], Any]:
    """A validator built from a field table alone, for record types without rules of
    their own: required fields present, no unknown field, each value checked by its
    kind (text: a string; timestamp: ISO 8601 with a zone, 1900-2100; price: a
    positive finite number up to MAX_PRICE; count: a whole number 0..MAX_VOLUME;
    score: a finite number), ``symbol`` and ids (``*_id``) checked as for ticks.
    Ticks and news have hand-written parsers with more rules (and speed)."""
    required = frozenset(f.name for f in fields if f.required)
    known = frozenset(f.name for f in fields)

    def check(field: Field, value: Any) -> Any:
        if field.name == "symbol":
            return _check_symbol(value)
        if field.name.endswith("_id"):
            return check_id(value, field.name)
        if field.kind == "text":
            return _text(value, field.name)
        if field.kind == "timestamp":
            return _timestamp(value, field.name)
        if field.kind == "price":
            return _price(value, field.name)
        if field.kind == "count":
            if type(value) is not int or not 0 <= value <= MAX_VOLUME:
                raise InvalidRecord(f"expected a whole number 0-{MAX_VOLUME:,}", field.name)
            return value
        if type(value) not in (int, float) or not math.isfinite(value):
            raise InvalidRecord(f"expected a finite number, got {value!r}", field.name)
        return float(value)

    def parse(data: Any) -> Any:
        check_fields(data, required, known)
        values = {}
        for field in fields:
            value = data.get(field.name)
            values[field.name] = None if value is None else check(field, value)
            if value is None and field.required:
                raise InvalidRecord("must not be null", field.name)
        return record(**values)

    return parse


def decode_json(payload: bytes | None, parse: Callable[[Any], T], what: str) -> T:
    """Parse a Kafka message value with ``parse``; any failure of parsing or validation
    (whatever its type) is an :class:`InvalidRecord`, so a message can never stop the
    consumer. ``what`` names the record type in messages."""
    if payload is None:
        raise InvalidRecord("empty message (null value)")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise InvalidRecord(f"malformed JSON: {str(error)[:200]}") from None
    try:
        return parse(data)
    except InvalidRecord:
        raise
    except Exception as error:  # e.g. OverflowError, RecursionError on hostile input
        raise InvalidRecord(f"cannot be read as {what}: {type(error).__name__}: {error}") from None


def decode(payload: bytes | None) -> Tick:
    """Parse a Kafka message value; :class:`InvalidRecord` says what is wrong with it."""
    return decode_json(payload, parse_tick, "a tick")
