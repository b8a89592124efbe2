"""Records as Arrow columns: a whole poll of tick messages decoded at once.

The consumer's hot path. Decoding ticks one by one (``orjson`` + :func:`parse_tick`),
re-encoding each for GCS and transposing them into columns for BigQuery cost about
6.8 µs a record; pyarrow's JSON reader over a whole poll, the same rules checked on
columns, and the message bytes kept as GCS lines when they are canonical cost about
3 µs (measured on 100k ticks in polls of 5,000).

:func:`decode_ticks` is a fast path only: it answers for a whole poll or not at all
(``None``), and only when every message passes checks at least as strict as
:func:`pipeline_lib.records.schema.parse_tick`'s, in the one JSON form our producer writes
(times as ``...Z``, text in printable ASCII). Anything else, one bad message in the
poll included, goes through the per-record decoder, which names each bad message's
reason for its dead letter. So the records accepted, and their values, are the same
either way (``tests/unit/test_columns.py`` checks this on hostile variants).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from pipeline_lib.records.contract import MAX_UNKNOWN_FIELDS
from pipeline_lib.records.schema import (
    EARLIEST,
    LATEST,
    MAX_EVENT_ID_LENGTH,
    MAX_PRICE,
    MAX_VOLUME,
    SOURCES,
    SYMBOL_PATTERN,
    TICK_FIELDS,
    Field,
    Tick,
    arrow_type,
    encode,
)


def record_schema(fields: tuple[Field, ...]) -> Any:
    """The Arrow schema of a record's fields (types from the one table, schema.KINDS)."""
    import pyarrow as pa

    return pa.schema(
        [pa.field(f.name, arrow_type(f.kind), nullable=not f.required) for f in fields]
    )


def records_to_table(records: Sequence[Any], fields: tuple[Field, ...]) -> Any:
    """Records (NamedTuples of ``fields``) as an Arrow table: columns built by
    transposing the records (C speed), not a dict per record."""
    import pyarrow as pa

    schema = record_schema(fields)
    if not records:
        return schema.empty_table()
    columns = zip(*records, strict=True)
    by_name = dict(zip(records[0]._fields, columns, strict=True))
    return pa.Table.from_arrays(
        [pa.array(by_name[f.name], type=f.type) for f in schema], schema=schema
    )


def table_to_records(table: Any, record: Callable[..., Any]) -> list[Any]:
    """The rows of ``table`` as record objects (for the rare paths that need them)."""
    return [record(**row) for row in table.to_pylist()]


# --- the tick fast path --------------------------------------------------------------

_KNOWN = frozenset(f.name for f in TICK_FIELDS)
_TIMESTAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$"  # what encode() writes


def _raw_schema() -> Any:
    """Tick fields as the JSON reader reads them: times as text (checked, then cast)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(f.name, pa.string() if f.kind == "timestamp" else arrow_type(f.kind))
            for f in TICK_FIELDS
        ]
    )


def _float_text(column: Any) -> tuple[Any, Any]:
    """A float column of checked prices (positive, finite) as orjson writes them
    (``5.0``, ``123.45``), and where that holds: Arrow's shortest form without an
    exponent, with ``.0`` added to whole numbers, at 1e-5 and above (below, Arrow
    writes ``0.000001`` where orjson writes ``1e-6``)."""
    import pyarrow.compute as pc

    text = column.cast("string")
    plain = pc.and_(pc.invert(pc.match_substring(text, "e")), pc.greater_equal(column, 1e-5))
    whole = pc.invert(pc.match_substring(text, "."))
    return pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text), plain


def decode_ticks(
    values: list[bytes | None],
) -> tuple[Any, list[bytes], list[dict[str, Any] | None] | None] | None:
    """A poll of tick message values as (an Arrow table of the tick fields, each
    record's JSON line, each record's fields of a newer contract or None for a poll
    without any), or None: decode these one by one instead. A record with fields
    the tick does not know keeps them, and its line is the message as sent (what
    :meth:`pipeline_lib.records.streams.Stream.read` does one by one)."""
    import pyarrow as pa

    try:
        return _decode_ticks(values)
    except (pa.ArrowException, ValueError, TypeError):
        return None  # e.g. text that is not UTF-8: the per-record path names it


def _decode_ticks(
    values: list[bytes | None],
) -> tuple[Any, list[bytes], list[dict[str, Any] | None] | None] | None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    n = len(values)
    if n == 0:
        return None
    try:
        buffer = b"\n".join(values)  # type: ignore[arg-type]
    except TypeError:
        return None  # a null value
    if buffer.count(b"\n") != n - 1 or b"\r" in buffer:
        return None  # a value spans lines: the reader would not see n rows
    given = _lines_array(values, buffer)  # type: ignore[arg-type]
    objects = pc.and_(pc.starts_with(given, "{"), pc.ends_with(given, "}\n"))
    if not pc.all(objects).as_py():
        return None  # one JSON object per value, nothing around it
    try:
        raw = pj.read_json(
            io.BytesIO(buffer),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(buffer) + 1),
            parse_options=pj.ParseOptions(
                explicit_schema=_raw_schema(), unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowException, ValueError):
        return None  # malformed, a wrong type, a duplicate key...
    if raw.num_rows != n:
        return None
    column = raw.column
    checks = [
        pc.string_is_ascii(column("event_id")),  # printable ASCII, 1-128 characters:
        pc.utf8_is_printable(column("event_id")),  # cheaper than a regular expression
        pc.greater_equal(pc.utf8_length(column("event_id")), 1),
        pc.less_equal(pc.utf8_length(column("event_id")), MAX_EVENT_ID_LENGTH),
        pc.match_substring_regex(column("symbol"), f"^{SYMBOL_PATTERN.pattern}$"),
        pc.is_in(column("source"), value_set=pa.array(sorted(SOURCES))),
        pc.match_substring_regex(column("ts"), _TIMESTAMP),
        pc.invert(pc.ends_with(column("ts"), ".000000Z")),
        pc.less_equal(column("volume"), MAX_VOLUME),
        pc.greater_equal(column("volume"), 0),
        pc.less_equal(column("low"), column("high")),
        pc.less_equal(column("low"), column("open")),
        pc.less_equal(column("open"), column("high")),
        pc.less_equal(column("low"), column("close")),
        pc.less_equal(column("close"), column("high")),
    ]
    for name in ("open", "high", "low", "close"):  # false for NaN and nulls
        checks += [pc.greater(column(name), 0.0), pc.less_equal(column(name), MAX_PRICE)]
    adj_close = column("adj_close")
    checks.append(
        pc.or_kleene(
            pc.is_null(adj_close),
            pc.and_(pc.greater(adj_close, 0.0), pc.less_equal(adj_close, MAX_PRICE)),
        )
    )
    produced_at = column("produced_at")
    checks.append(
        pc.or_kleene(
            pc.is_null(produced_at),
            pc.and_(
                pc.match_substring_regex(produced_at, _TIMESTAMP),
                pc.invert(pc.ends_with(produced_at, ".000000Z")),
            ),
        )
    )
    valid = checks[0]
    for check in checks[1:]:
        valid = pc.and_kleene(valid, check)
    if valid.null_count or not pc.all(valid).as_py():  # a null is a missing field
        return None
    utc = pa.timestamp("us", tz="UTC")
    try:
        ts = column("ts").cast(utc)
        produced = produced_at.cast(utc)
    except (pa.ArrowException, ValueError):
        return None  # e.g. 2024-02-30
    earliest, latest = pa.scalar(EARLIEST, type=utc), pa.scalar(LATEST, type=utc)
    in_range = pc.and_(pc.greater_equal(ts, earliest), pc.less(ts, latest))
    produced_in_range = pc.or_kleene(
        pc.is_null(produced),
        pc.and_(pc.greater_equal(produced, earliest), pc.less(produced, latest)),
    )
    if not pc.all(pc.and_kleene(in_range, produced_in_range)).as_py():
        return None
    table = raw.set_column(raw.schema.get_field_index("ts"), "ts", ts).set_column(
        raw.schema.get_field_index("produced_at"), "produced_at", produced
    )
    table = table.cast(record_schema(TICK_FIELDS))
    lines = _lines(raw, values, given, buffer)  # type: ignore[arg-type]
    if lines is None:
        return None
    return table, lines[0], lines[1]


def _lines_array(values: list[bytes], buffer: bytes) -> Any:
    """The values as an Arrow binary array, each with its newline, over ``buffer``
    (the values joined by newlines) without copying them one by one."""
    import numpy as np
    import pyarrow as pa

    ends = np.fromiter(map(len, values), dtype=np.int64, count=len(values)) + 1
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(ends, out=offsets[1:])
    data = pa.py_buffer(buffer + b"\n")
    return pa.Array.from_buffers(
        pa.large_binary(), len(values), [None, pa.py_buffer(offsets), data]
    )


def _lines(
    raw: Any, values: list[bytes], given: Any, buffer: bytes
) -> tuple[list[bytes], list[dict[str, Any] | None] | None] | None:
    """Each record's JSON line, and its fields of a newer contract (None for a poll
    without any): the message value where the value is exactly what
    :func:`pipeline_lib.records.schema.encode` would write (our producer's), checked
    by writing the canonical text on columns; the message as sent where it carries
    fields the tick does not know; else the record encoded again. None: one record
    carries more unknown fields than a newer contract adds (the per-record path
    refuses it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = raw.column
    pieces: list[Any] = []  # literal text and columns, joined row by row
    literal = ""
    plain: list[Any] = []  # where each column's text is the canonical one
    for i, f in enumerate(TICK_FIELDS):
        literal += ("{" if i == 0 else ",") + f'"{f.name}":'
        value = column(f.name)
        if f.kind in ("text", "timestamp") and f.required:
            pieces += [literal + '"', value]  # text is written as it is when nothing in
            literal = '"'  # it needs escaping: no backslash anywhere (checked below)
            continue
        if f.kind in ("text", "timestamp"):
            text = pc.binary_join_element_wise('"', value, '"', "")
        elif f.kind == "count":
            text = value.cast("string")
        else:
            text, ok = _float_text(value)
            plain.append(ok if f.required else pc.fill_null(ok, True))
        pieces += [literal, text if f.required else pc.coalesce(text, "null")]
        literal = ""
    pieces.append(literal + "}\n")
    canonical = pc.binary_join_element_wise(*pieces, "")
    same = pc.equal(canonical.cast(pa.large_binary()), given)
    if b"\\" in buffer:  # an escape: the value's text is not what it decodes to
        same = pc.and_(same, pc.invert(pc.match_substring(given, "\\")))
    for ok in plain:
        same = pc.and_(same, ok)
    lines: list[bytes] = list(values)
    extras: list[dict[str, Any] | None] | None = None
    if not pc.all(same).as_py():
        redo = []
        for i, ok in enumerate(same.to_pylist()):
            if ok:
                continue
            data = orjson.loads(values[i])  # valid JSON: the reader took it
            unknown = data.keys() - _KNOWN
            if not unknown:
                redo.append(i)
                continue
            if len(unknown) > MAX_UNKNOWN_FIELDS:
                return None
            extras = extras if extras is not None else [None] * len(values)
            extras[i] = {name: data[name] for name in data if name in unknown}
        if redo:
            records = table_to_records(_typed(raw.take(redo)), Tick)
            for i, record in zip(redo, records, strict=True):
                lines[i] = encode(record)
    return lines, extras


def _typed(raw: Any) -> Any:
    """Rows of the reader's table with their times cast (already checked)."""
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    for name in ("ts", "produced_at"):
        index = raw.schema.get_field_index(name)
        raw = raw.set_column(index, name, raw.column(name).cast(utc))
    return raw
