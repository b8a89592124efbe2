"""The record types the pipeline carries, each a *stream*: ticks, and news.

A :class:`Stream` bundles what the generic parts need to know about a record type:
its field table (→ BigQuery columns), how to encode and decode it, which field is
its stable id (→ the dedup view). The producer, the consumer and both sinks are
written once and take a stream; :func:`pipeline_lib.records.routes.route` gives each
stream its own topic, dead-letter topic, consumer group and table. A new record
type costs a field table and a :func:`register` call
(``tests/integration/test_third_stream.py`` does it). Every record type has ``ts``
(its event time: the table's day partitions and the GCS date folders), ``symbol``
(the table's clustering) and an optional ``produced_at`` (the producer stamps it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline_lib.core.errors import PipelineError
from pipeline_lib.records import columns, contract, news, schema
from pipeline_lib.records.batches import PartitionBatch
from pipeline_lib.records.schema import KINDS, LANDING_FIELDS, Field


@dataclass(frozen=True)
class Stream:
    """One record type and how the pipeline handles it."""

    name: str
    record: type
    fields: tuple[Field, ...]
    id_field: str
    encode: Callable[..., bytes]  # (record, produced_at=None) -> bytes
    decode: Callable[[bytes | None], Any]
    description: str  # of the BigQuery table
    # A whole poll's values at once, as (columns, lines, each record's fields of a
    # newer contract or None), or None: decode them one by one (see
    # pipeline_lib.records.columns). None where it does not pay.
    decode_many: Callable[[list[bytes | None]], tuple[Any, list[bytes], Any] | None] | None = None
    version: str = "1.0"  # of its contract (pipeline_lib.records.contract)

    def read(self, value: bytes | None) -> tuple[Any, dict[str, Any] | None]:
        """The tolerant reader: the record, and the fields of a newer contract this
        one does not know (None when there are none). Every rule of a known field is
        checked as :attr:`decode` checks it; the unknown fields are only kept."""
        try:
            return self.decode(value), None
        except schema.UnknownFields as unknown:
            if len(unknown.names) > contract.MAX_UNKNOWN_FIELDS:
                raise schema.InvalidRecord(
                    f"{len(unknown.names)} unknown fields: a newer contract adds a few "
                    f"(at most {contract.MAX_UNKNOWN_FIELDS} are kept)"
                ) from None
            data = orjson.loads(value)  # type: ignore[arg-type] - decoded once already
        known = {f.name for f in self.fields}
        extras = {name: data.pop(name) for name in list(data) if name not in known}
        return self.decode(orjson.dumps(data)), extras

    def to_table(self, records: list[Any]) -> Any:
        """Records as a pyarrow Table of the stream's fields."""
        return columns.records_to_table(records, self.fields)

    def partition_batch(
        self,
        topic: str,
        partition: int,
        records: list[Any],
        offsets: list[int] | None = None,
        keys: list[bytes | None] | None = None,
        values: list[bytes] | None = None,
    ) -> PartitionBatch:
        """A batch of ``records`` as the consumer would hold them (offsets from 0 and
        values encoded unless given): how tools and tests build one."""
        offsets = list(range(len(records))) if offsets is None else offsets
        lines = [self.encode(r) for r in records]
        return PartitionBatch(
            topic,
            partition,
            offsets[0] if offsets else 0,
            offsets,
            keys if keys is not None else [None] * len(records),
            values if values is not None else list(lines),
            lines,
            [self.to_table(records)],
            self.record,
            [None] * len(records),
        )

    @property
    def columns(self) -> tuple[tuple[str, str, str, str], ...]:
        """The table's columns: the record's fields, then where each row came from:
        (name, BigQuery type, mode, description)."""
        return tuple(
            (
                f.name,
                KINDS[f.kind].bigquery,
                "REQUIRED" if f.required else "NULLABLE",
                f.description,
            )
            for f in (*self.fields, *LANDING_FIELDS)
        )


TICKS = Stream(
    "ticks",
    schema.Tick,
    schema.TICK_FIELDS,
    "event_id",
    schema.encode,
    schema.decode,
    "Stock ticks landed from Kafka by pipeline_lib (raw, may repeat)",
    columns.decode_ticks,
)
NEWS = Stream(
    "news",
    news.News,
    news.NEWS_FIELDS,
    "news_id",
    news.encode,
    news.decode,
    "News stories with sentiment landed from Kafka by pipeline_lib (raw, may repeat)",
)
STREAMS: dict[str, Stream] = {s.name: s for s in (TICKS, NEWS)}


def register(stream: Stream) -> Stream:
    """Add a record type: from then on it has a route, a topic, a table, a consumer.
    Its name becomes its table's name: 1-40 of a-z 0-9 _, not ending in ``_dedup``."""
    if stream.name in STREAMS or stream.name in ("all", "both"):
        raise ValueError(f"a stream named {stream.name!r} exists already")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", stream.name) or stream.name.endswith("_dedup"):
        raise ValueError(
            f"stream name {stream.name!r}: use 1-40 of a-z 0-9 _ (it names the table), "
            "not ending in _dedup (the views' suffix)"
        )
    STREAMS[stream.name] = stream
    return stream


class UnknownStream(PipelineError, ValueError):
    """A stream name that is not registered."""


def get_stream(name: str) -> Stream:
    try:
        return STREAMS[name]
    except KeyError:
        raise UnknownStream(f"unknown stream {name!r}: use one of {', '.join(STREAMS)}") from None


def stream_of(record: Any) -> Stream:
    """The stream a record belongs to (by its type)."""
    for stream in STREAMS.values():
        if type(record) is stream.record:
            return stream
    raise UnknownStream(f"{type(record).__name__} is not a record of any stream")


def stream_names(choice: str) -> tuple[str, ...]:
    """A stream's name, or ``"both"`` / ``"all"`` (every stream) → the streams it means."""
    if choice in ("both", "all"):
        return tuple(STREAMS)
    get_stream(choice)
    return (choice,)
