"""Schema evolution without a network (issue 23): the contract and its stamp, the
tolerant reader, the consumer core keeping unknown fields, and the BigQuery plan
(the extra column, columns added, a type change refused)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pytest

from pipeline_lib.kafka_io.batching import Batcher
from pipeline_lib.records import contract
from pipeline_lib.records.batches import Batch
from pipeline_lib.records.schema import InvalidRecord, record_codec, record_parser
from pipeline_lib.records.streams import NEWS, TICKS, Stream
from pipeline_lib.sinks.bigquery import batch_table, evolution
from tests.helpers import simulated

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
NEWER = [(contract.HEADER, b"ticks/1.1")]


def newer_value(tick, **fields) -> bytes:
    data = orjson.loads(TICKS.encode(tick))
    data.update(fields)
    return orjson.dumps(data)


# --- the contract ---------------------------------------------------------------------


def test_producers_stamp_the_stream_and_its_version() -> None:
    assert contract.stamp(TICKS) == ("contract", b"ticks/1.0")
    assert contract.stamp(NEWS) == ("contract", b"news/1.0")


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        (None, None),
        ([], None),
        ([("other", b"x")], None),
        ([("contract", b"ticks/1.0")], None),
        ([("contract", b"ticks/1.7")], None),  # a newer minor version: read it
        ([("contract", b"ticks/2.0")], "a major version this consumer (ticks/1.0)"),
        ([("contract", b"news/1.0")], "a news record, not ticks"),
    ],
)
def test_a_message_of_another_major_version_or_stream_is_refused(headers, refused) -> None:
    reason = contract.refusal(TICKS, headers)
    assert reason is None if refused is None else refused in reason


def test_the_contract_exports_as_json_schema_open_to_new_fields() -> None:
    schema = contract.json_schema(TICKS)
    assert schema["title"] == "ticks 1.0" and schema["additionalProperties"] is True
    assert set(schema["required"]) == {f.name for f in TICKS.fields if f.required}
    assert schema["properties"]["ts"]["format"] == "date-time"
    assert {"type": "null"} in schema["properties"]["adj_close"]["anyOf"]
    json.dumps(schema)  # plain JSON


# --- the tolerant reader --------------------------------------------------------------


def test_the_reader_keeps_fields_it_does_not_know_and_checks_the_rest() -> None:
    tick = simulated(1)[0]
    record, extras = TICKS.read(newer_value(tick, exchange="XNAS", bid=1.5))
    assert record == TICKS.decode(TICKS.encode(tick)) and extras == {"exchange": "XNAS", "bid": 1.5}
    assert TICKS.read(TICKS.encode(tick)) == (record, None)
    with pytest.raises(InvalidRecord, match="close"):
        TICKS.read(newer_value(tick, exchange="XNAS", close="12.5"))  # a known field's rule
    with pytest.raises(InvalidRecord, match="missing field"):
        data = orjson.loads(newer_value(tick, exchange="XNAS"))
        del data["volume"]
        TICKS.read(orjson.dumps(data))
    with pytest.raises(InvalidRecord, match="at most 100"):
        TICKS.read(newer_value(tick, **{f"f{i}": i for i in range(101)}))
    with pytest.raises(InvalidRecord, match="malformed JSON"):
        TICKS.read(b'{"event_id": ')


def test_every_stream_reads_the_same_way_news_and_a_registered_one() -> None:
    story = orjson.loads(
        b'{"news_id":"n:1","symbol":"AAPL","ts":"2026-01-05T15:00:00Z",'
        b'"headline":"Apple beats","summary":null,"source":"simulator","publisher":"Wire",'
        b'"url":null,"sentiment":0.5,"sentiment_label":"positive",'
        b'"provider_sentiment":null,"relevance":null,"produced_at":null}'
    )
    story["topic"] = "earnings"
    record, extras = NEWS.read(orjson.dumps(story))
    assert record.news_id == "n:1" and extras == {"topic": "earnings"}

    from typing import NamedTuple

    from pipeline_lib.records.schema import Field

    class Quote(NamedTuple):
        quote_id: str
        symbol: str
        ts: datetime
        bid: float

        def to_dict(self) -> dict:
            """Replaced by record_codec."""
            raise NotImplementedError

    fields = (
        Field("quote_id", "text", True, "id"),
        Field("symbol", "text", True, "symbol"),
        Field("ts", "timestamp", True, "time"),
        Field("bid", "price", True, "bid"),
    )
    parse = record_parser(Quote, fields)
    from pipeline_lib.records.schema import decode_json

    quotes = Stream(
        "quotes",
        Quote,
        fields,
        "quote_id",
        record_codec(Quote, fields),
        lambda value: decode_json(value, parse, "a quote"),
        "quotes",
    )
    value = b'{"quote_id":"q:1","symbol":"AAPL","ts":"2026-01-05T15:00:00Z","bid":1.5,"ask":1.6}'
    record, extras = quotes.read(value)
    assert record.bid == 1.5 and extras == {"ask": 1.6}


# --- the consumer core ----------------------------------------------------------------


@dataclass
class Message:
    offset: int
    value: bytes
    key: bytes | None = b"K"
    headers: list = field(default_factory=list)
    topic: str = "t"
    partition: int = 0


def core() -> Batcher:
    return Batcher(
        "t",
        decode=TICKS.decode,
        read=TICKS.read,
        refuse=lambda headers: contract.refusal(TICKS, headers),
        columns=TICKS,
        flush_interval=60,
    )


def test_a_poll_of_two_versions_lands_whole_with_the_new_fields_kept() -> None:
    ticks = simulated(6)
    messages = [
        Message(i, TICKS.encode(t), headers=[contract.stamp(TICKS)])
        for i, t in enumerate(ticks[:3])
    ] + [
        Message(3 + i, newer_value(t, exchange="XNAS"), headers=NEWER)
        for i, t in enumerate(ticks[3:])
    ]
    batcher = core()
    batcher.add(0, messages[:2])  # the fast path: nothing unknown in this poll
    batcher.add(0, messages[2:])
    sealed = batcher.seal(NOW)
    part = sealed.batch.parts[0]
    assert len(part) == 6 and not sealed.dead_letters
    assert part.extras == [
        None,
        None,
        None,
        {"exchange": "XNAS"},
        {"exchange": "XNAS"},
        {"exchange": "XNAS"},
    ]
    assert part.lines[3] == messages[3].value  # verbatim for GCS
    assert b'"exchange"' not in part.lines[2]
    assert batcher.counts.newer == 3 and batcher.counts.unknown_fields == {"exchange": 3}
    assert part.take([1, 4]).extras == [None, {"exchange": "XNAS"}]


def test_a_message_of_another_major_version_is_a_dead_letter_and_the_rest_lands() -> None:
    ticks = simulated(3)
    batcher = core()
    batcher.add(
        0,
        [
            Message(0, TICKS.encode(ticks[0])),
            Message(1, TICKS.encode(ticks[1]), headers=[(contract.HEADER, b"ticks/2.0")]),
            Message(2, TICKS.encode(ticks[2])),
        ],
    )
    sealed = batcher.seal(NOW)
    assert len(sealed.batch) == 2
    (letter,) = sealed.dead_letters
    assert letter.offset == 1 and "ticks/2.0, a major version" in letter.reason


# --- BigQuery: the plan and the rows --------------------------------------------------


def batch_with(extras: list[dict | None]) -> Batch:
    ticks = simulated(len(extras))
    part = TICKS.partition_batch("t", 0, ticks)
    part.extras = list(extras)
    return Batch([part], NOW, "g", 1)


RESERVED = frozenset(name.lower() for name, *_ in TICKS.columns)


def test_json_policy_adds_nothing_and_keeps_the_fields_in_extra() -> None:
    batch = batch_with([{"exchange": "XNAS"}, None, {"exchange": "XNYS", "n": 1}])
    plan = evolution.plan(batch, {}, RESERVED, False, "p.d.t", "bigquery")
    assert plan.new_columns == [] and plan.refused == [] and plan.keep == [[0, 1, 2]]
    table = batch_table(batch)
    assert table.column("extra").to_pylist() == [
        '{"exchange":"XNAS"}',
        None,
        '{"exchange":"XNYS","n":1}',
    ]


def test_add_policy_plans_typed_columns_and_fills_them() -> None:
    batch = batch_with(
        [
            {"exchange": "XNAS", "bid": 1, "halted": False, "book": {"a": 1}, "bad name": 1},
            {"exchange": "XNYS", "bid": 1.5, "halted": None},
        ]
    )
    plan = evolution.plan(batch, {}, RESERVED, True, "p.d.t", "bigquery")
    assert plan.new_columns == [("exchange", "STRING"), ("bid", "INT64"), ("halted", "BOOL")]
    added = (("exchange", "STRING"), ("bid", "FLOAT64"), ("halted", "BOOL"))
    table = batch_table(batch, TICKS, added)
    assert table.column("exchange").to_pylist() == ["XNAS", "XNYS"]
    assert table.column("bid").to_pylist() == [1.0, 1.5]
    assert table.column("extra").to_pylist() == ['{"book":{"a":1},"bad name":1}', None]


def test_a_value_that_does_not_fit_its_column_is_refused_in_one_line() -> None:
    columns = {"exchange": ("exchange", "STRING"), "bid": ("bid", "FLOAT64")}
    batch = batch_with([{"exchange": 12}, {"exchange": "XNAS", "bid": 3}, {"bid": "x"}])
    plan = evolution.plan(batch, columns, RESERVED, False, "p.d.t", "bigquery")
    assert plan.keep == [[1]]  # an int fits a FLOAT64 column
    first, third = plan.refused
    assert first.offset == 0 and third.offset == 2
    assert first.reason.startswith("field 'exchange' is STRING in p.d.t, this record has INT64 12")
    assert "a field keeps its type" in first.reason and "new field name" in first.reason
    assert 'STRING "x"' in third.reason and "\n" not in third.reason


def test_names_bigquery_cannot_take_or_that_differ_only_in_case_stay_in_extra() -> None:
    batch = batch_with(
        [{"Symbol": "x", "_TABLE_x": 1, "9lives": 1, "ok_name": 1, "ingested_at": "soon"}]
    )
    plan = evolution.plan(batch, {}, RESERVED, True, "p.d.t", "bigquery")
    assert plan.new_columns == [("ok_name", "INT64")] and not plan.refused  # no clash


def test_columns_stop_being_added_past_the_bound() -> None:
    batch = batch_with([{f"f{i}": i for i in range(10)}])
    added = {f"g{i}": (f"g{i}", "INT64") for i in range(evolution.MAX_ADDED_COLUMNS - 3)}
    plan = evolution.plan(batch, added, RESERVED, True, "t", "b")
    assert [name for name, _ in plan.new_columns] == ["f0", "f1", "f2"]


def test_two_records_of_a_batch_that_disagree_on_a_new_fields_type() -> None:
    batch = batch_with([{"venue": {"mic": "XNAS"}}, {"venue": "XNAS"}])
    first = evolution.plan(batch, {}, RESERVED, True, "p.d.t", "bigquery")
    assert first.new_columns == [("venue", "STRING")] and not first.refused
    again = evolution.plan(batch, {"venue": ("venue", "STRING")}, RESERVED, True, "p.d.t", "b")
    assert again.new_columns == [] and again.keep == [[1]]  # the object does not fit
    assert "field 'venue' is STRING" in again.refused[0].reason


def test_a_newer_record_sent_pretty_printed_is_one_line_for_gcs() -> None:
    tick = simulated(1)[0]
    data = orjson.loads(newer_value(tick, exchange="XNAS"))
    pretty = orjson.dumps(data, option=orjson.OPT_INDENT_2)
    assert b"\n" in pretty
    batcher = core()
    batcher.add(0, [Message(0, pretty, headers=NEWER)])
    part = batcher.seal(NOW).batch.parts[0]
    assert b"\n" not in part.lines[0] and orjson.loads(part.lines[0]) == data


def test_parquet_objects_keep_the_new_fields_in_an_extra_column() -> None:
    import io

    import pyarrow.parquet as pq

    from pipeline_lib.sinks.gcs import parquet_bytes

    part = batch_with([{"exchange": "XNAS"}, None]).parts[0]
    table = pq.read_table(io.BytesIO(parquet_bytes(part)))
    assert table.column("extra").to_pylist() == ['{"exchange":"XNAS"}', None]
