"""The record types the pipeline carries, each a *stream*: ticks, and news.

A :class:`Stream` bundles what the generic parts need to know about a record type:
its field table (→ BigQuery columns), how to encode and decode it, which field is
its stable id (→ the dedup view). The producer, the consumer and both sinks are
written once and take a stream; :meth:`pipeline_lib.config.Settings.for_stream`
gives each stream its own topic, dead-letter topic, consumer group and table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_lib import news, schema
from pipeline_lib.errors import PipelineError
from pipeline_lib.schema import KINDS, LANDING_FIELDS, Field


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
_BY_TYPE = {s.record: s for s in STREAMS.values()}


class UnknownStream(PipelineError, ValueError):
    """A stream name that is not ticks or news."""


def get_stream(name: str) -> Stream:
    try:
        return STREAMS[name]
    except KeyError:
        raise UnknownStream(f"unknown stream {name!r}: use one of {', '.join(STREAMS)}") from None


def stream_of(record: Any) -> Stream:
    """The stream a record belongs to (by its type)."""
    try:
        return _BY_TYPE[type(record)]
    except KeyError:
        raise UnknownStream(f"{type(record).__name__} is not a record of any stream") from None


def stream_names(choice: str) -> tuple[str, ...]:
    """``"ticks"``, ``"news"`` or ``"both"`` → the streams it means."""
    if choice == "both":
        return tuple(STREAMS)
    get_stream(choice)
    return (choice,)
