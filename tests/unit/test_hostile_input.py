"""Input an adversary would send, refused with one clear reason or made safe."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime

import orjson
import pyarrow.json as pa_json
import pytest

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.kafka_io.batching import Batcher
from pipeline_lib.kafka_io.dead_letters import MAX_KEY_BYTES, MAX_VALUE_BYTES, dead_letter_message
from pipeline_lib.records.batches import DeadLetter, PartitionBatch
from pipeline_lib.records.schema import MAX_VOLUME, InvalidRecord, Tick, decode, encode
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks.gcs import ndjson_bytes, object_name, split_by_date
from tests.fakes import Record as Message

WHEN = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
TICK = Tick("sim1:AAPL:1", "AAPL", WHEN, 100.0, 101.0, 99.0, 100.5, 1200, "simulator")


def value(**changes) -> bytes:
    return orjson.dumps({**orjson.loads(encode(TICK)), **changes})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"ts": "9999-12-31T23:59:59-01:00"}, "outside 1900-2100"),
        ({"ts": "0001-01-01T00:00:00+01:00"}, "outside 1900-2100"),
        ({"ts": "2100-01-01T00:00:00Z"}, "outside 1900-2100"),
        ({"ts": "1899-12-31T23:59:59Z"}, "outside 1900-2100"),
        ({"produced_at": "0001-01-01T00:00:00+01:00"}, "outside 1900-2100"),
        ({"symbol": "AAPL\n"}, "not a ticker"),
        ({"volume": MAX_VOLUME + 1}, "above the bound"),
        ({"open": 2e9, "high": 3e9}, "above"),
        ({"event_id": "a\nb"}, "printable"),
    ],
)
def test_valid_looking_but_out_of_range_records_are_invalid(changes, reason):
    with pytest.raises(InvalidRecord, match=reason):
        decode(value(**changes))


def test_integers_beyond_any_float_are_an_invalid_record_not_a_crash():
    with pytest.raises(InvalidRecord):
        decode(json.dumps({**orjson.loads(encode(TICK)), "open": 10**400}).encode())


def test_two_max_volume_ticks_sum_inside_int64():
    assert 2 * MAX_VOLUME < 2**63 - 1 and 92_000_000 * MAX_VOLUME < 2**63 - 1


def part_of(values: list[bytes], first: int = 50) -> PartitionBatch:
    """The values as the consumer's core holds them (decoded as it decodes them)."""
    core = Batcher("t", decode=TICKS.decode, columns=TICKS)
    core.add(1, [Message("t", 1, first + i, None, raw) for i, raw in enumerate(values)])
    return core.seal(WHEN).batch.parts[0]


def test_gcs_objects_are_always_one_canonical_line_per_record():
    pretty = json.dumps(orjson.loads(encode(TICK)), indent=2).encode()
    duplicate = encode(TICK)[:-1] + b',"symbol":"AAPL"}'
    plain = encode(TICK._replace(event_id="x2"))
    data = ndjson_bytes(part_of([pretty, duplicate, plain]))
    lines = data.splitlines()
    assert len(lines) == 3 and lines[2] == plain  # canonical values are kept byte for byte
    assert all(orjson.loads(line)["symbol"] == "AAPL" for line in lines)
    table = pa_json.read_json(io.BytesIO(data))
    assert table.num_rows == 3


def test_gcs_pieces_follow_each_record_own_date():
    other_day = encode(TICK._replace(event_id="x3", ts=datetime(2031, 5, 6, tzinfo=UTC)))
    pieces = split_by_date(part_of([encode(TICK), other_day, encode(TICK._replace(event_id="x4"))]))
    names = [object_name(p, "raw", "ndjson") for p in pieces]
    assert names == [
        "raw/topic=t/date=2024-01-02/partition=1/00000000000000000050.ndjson",
        "raw/topic=t/date=2031-05-06/partition=1/00000000000000000051.ndjson",
    ]
    assert [len(p.records) for p in pieces] == [2, 1]


def letter(value: bytes | None, key: bytes | None = b"AAPL") -> DeadLetter:
    return DeadLetter("t", 2, 77, key, value, "why" * 1000, "ts", "decode")


def test_dead_letters_within_the_bound_are_verbatim():
    key, value, headers = dead_letter_message(letter(b"x" * 1000))
    names = dict(headers)
    assert value == b"x" * 1000 and key == b"AAPL" and "dlq.truncated" not in names
    assert len(names["dlq.reason"]) == 1000
    assert names["dlq.offset"] == b"77" and names["dlq.partition"] == b"2"


@pytest.mark.parametrize("size", [1_048_300, 2 * 1024 * 1024])
def test_dead_letters_too_large_for_the_topic_are_cut_and_say_so(size):
    key, value, headers = dead_letter_message(letter(b"v" * size, key=b"k" * 5000))
    names = dict(headers)
    assert len(value) == MAX_VALUE_BYTES and len(key) == MAX_KEY_BYTES
    assert names["dlq.truncated"] == b"value,key"
    assert names["dlq.original_value_bytes"] == str(size).encode()
    assert names["dlq.original_key_bytes"] == b"5000"
    total = len(value) + len(key) + sum(len(k) + len(v) for k, v in headers)
    assert total < 1_000_000  # inside Kafka's default record limit


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PIPELINE_TOPIC", "bad topic!", "PIPELINE_TOPIC='bad topic!' is not a Kafka topic"),
        ("PIPELINE_TOPIC", "x" * 250, "is not a Kafka topic name"),
        ("PIPELINE_DLQ_TOPIC", "dlq\n", "PIPELINE_DLQ_TOPIC"),
        ("GCS_BUCKET", "Bad..Bucket", "GCS_BUCKET='Bad..Bucket' is not a GCS bucket name"),
        ("GCS_BUCKET", "ab", "GCS_BUCKET"),
        ("GCS_BUCKET", "192.168.1.1", "GCS_BUCKET"),
        ("GCP_PROJECT", "local-project\n", "GCP_PROJECT"),
        ("BQ_DATASET", "x'; DROP TABLE t;--", "BQ_DATASET"),
        ("BQ_TABLE", "ticks\n", "BQ_TABLE"),
        ("STORAGE_EMULATOR_HOST", "http://127.0.0.1:44x3", "STORAGE_EMULATOR_HOST"),
        ("BIGQUERY_EMULATOR_HOST", "ftp://127.0.0.1:9050", "BIGQUERY_EMULATOR_HOST"),
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:90x2", "KAFKA_BOOTSTRAP_SERVERS"),
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:99999", "KAFKA_BOOTSTRAP_SERVERS"),
        ("PIPELINE_PARTITIONS", "0", "PIPELINE_PARTITIONS"),
        ("PIPELINE_DELIVERY_TIMEOUT_S", "nan", "PIPELINE_DELIVERY_TIMEOUT_S"),
        ("PIPELINE_CONSUMER_GROUP", "a group", "PIPELINE_CONSUMER_GROUP"),
    ],
)
def test_bad_settings_name_the_variable_before_any_network_call(variable, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Settings.from_env({"PIPELINE_TARGET": "local", variable: value})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["produce", "--rate", "nan"], "--rate"),
        (["produce", "--speed", "0"], "--speed"),
        (["produce", "--duration", "-1"], "--duration"),
        (["produce", "--skip", "-1"], "--skip"),
        (["produce", "--start", "yesterday"], "--start"),
        (["consume", "--max-records", "-5"], "--max-records"),
        (["consume", "--batch-size", "0"], "--batch-size"),
        (["consume", "--flush-interval", "inf"], "--flush-interval"),
    ],
)
def test_nonsense_arguments_are_refused_with_one_line(argv, message):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_lib", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_bad_topic_name_in_the_environment_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_lib", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PIPELINE_HOME": str(tmp_path), "PIPELINE_TOPIC": "bad!"},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: PIPELINE_TOPIC='bad!' is not a Kafka topic name: use 1-249 of a-z A-Z 0-9 . _ -"
    ]


def test_dead_letters_keep_the_original_headers_but_none_posing_as_the_context():
    from dataclasses import replace

    original = (("trace", b"abc"), ("dlq.reason", b"all fine"), ("empty", None))
    _, _, headers = dead_letter_message(replace(letter(b"{}"), headers=original))
    assert headers[:2] == [("trace", b"abc"), ("empty", None)]
    assert [v for k, v in headers if k == "dlq.reason"] == [b"why" * 333 + b"w"]
    huge = (("blob", b"x" * 20_000),)
    _, _, headers = dead_letter_message(replace(letter(b"{}"), headers=huge))
    assert "blob" not in dict(headers) and dict(headers)["dlq.truncated"] == b"headers"
