"""A third record type costs a field table and a registry entry: registered here,
produced, landed in GCS and BigQuery by the same producer, consumer and sinks."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

import pytest

from pipeline_lib.analysis.monitor import bigquery_event_ids, gcs_event_ids
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.kafka_io.producer import produce, send_raw
from pipeline_lib.records.routes import route
from pipeline_lib.records.schema import Field, decode_json, record_codec, record_parser
from pipeline_lib.records.streams import STREAMS, Stream, register
from tests.helpers import START, unique_dead_letters

pytestmark = pytest.mark.integration


class Quote(NamedTuple):
    quote_id: str
    symbol: str
    ts: datetime
    bid: float
    ask: float
    size: int | None = None
    produced_at: datetime | None = None

    def to_dict(self) -> dict:  # replaced by record_codec
        raise NotImplementedError


QUOTE_FIELDS = (
    Field("quote_id", "text", True, "stable id"),
    Field("symbol", "text", True, "ticker symbol"),
    Field("ts", "timestamp", True, "quote time (UTC)"),
    Field("bid", "price", True, "best bid"),
    Field("ask", "price", True, "best ask"),
    Field("size", "count", False, "shares at the bid"),
    Field("produced_at", "timestamp", False, "when the producer sent it"),
)


@pytest.fixture
def quotes():
    """A throwaway stream under a name of its own (its topic and table follow)."""
    parse = record_parser(Quote, QUOTE_FIELDS)
    stream = register(
        Stream(
            f"quotes_{uuid.uuid4().hex[:8]}",
            Quote,
            QUOTE_FIELDS,
            "quote_id",
            record_codec(Quote, QUOTE_FIELDS),
            lambda value: decode_json(value, parse, "a quote"),
            "Quotes landed by a test",
        )
    )
    yield stream
    del STREAMS[stream.name]


def test_a_registered_stream_lands_once_in_both_sinks_with_its_dead_letters(settings, quotes):
    rows = [
        Quote(f"q:{i}", "AAPL", START + timedelta(seconds=i), 190.0 + i / 100, 190.05 + i / 100, i)
        for i in range(500)
    ]
    to = route(settings, quotes)
    assert to.topic == f"stock-{quotes.name}" and to.table == quotes.name
    assert produce(settings, rows).ok  # the producer finds the stream by record type
    send_raw(settings, b'{"quote_id": "bad", "symbol": "AAPL"}', b"AAPL", stream=quotes.name)
    report = SinkConsumer(settings, stream=quotes.name).run(until_idle=3, handle_signals=False)
    letters = unique_dead_letters(settings, stream=quotes.name)
    assert (report.written, report.dead_letters) == (500, 1), letters[:1]
    ids = {q.quote_id for q in rows}
    landed = bigquery_event_ids(settings, stream=quotes.name)
    assert set(landed) == ids and set(landed.values()) == {1}
    assert set(gcs_event_ids(settings, stream=quotes.name)) == ids
    (letter,) = letters
    assert "missing field(s): ask, bid, ts" in letter.reason and letter.key == b"AAPL"
