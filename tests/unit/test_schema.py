import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline_lib.records.schema import (
    InvalidRecord,
    Tick,
    decode,
    encode,
    make_event_id,
    parse_tick,
    validate,
)

WHEN = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def good(**changes):
    data = {
        "event_id": "sim1:AAPL:1",
        "symbol": "AAPL",
        "ts": "2024-01-02T14:30:00Z",
        "open": 100.0,
        "high": 101.5,
        "low": 99.5,
        "close": 101.0,
        "adj_close": None,
        "volume": 1200,
        "source": "simulator",
    }
    data.update(changes)
    return data


def test_round_trip_through_json():
    tick = Tick("csv:AAPL:1", "BRK.B", WHEN, 1.0, 2.0, 0.5, 1.5, 10, "csv", adj_close=1.4)
    assert decode(encode(tick)) == tick
    assert json.loads(encode(tick))["ts"] == "2024-01-02T14:30:00Z"
    later = tick._replace(ts=WHEN.replace(microsecond=7))
    assert json.loads(encode(later))["ts"] == "2024-01-02T14:30:00.000007Z"


def test_offset_times_become_utc():
    tick = parse_tick(good(ts="2024-01-02T09:30:00-05:00"))
    assert tick.ts == WHEN and tick.ts.tzinfo == UTC


def test_event_id_is_stable_and_zone_independent():
    eastern = WHEN.astimezone(timezone(timedelta(hours=-5)))
    assert make_event_id("csv", "AAPL", WHEN) == make_event_id("csv", "AAPL", eastern)
    assert make_event_id("csv", "AAPL", WHEN) == "csv:AAPL:1704205800000000"


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"open": -1.0}, "open", "positive"),
        ({"close": math.nan}, "close", "finite"),
        ({"high": math.inf}, "high", "finite"),
        ({"low": 102.0}, "low", "above high"),
        ({"open": 99.0}, "open", "outside"),
        ({"close": 102.0}, "close", "outside"),
        ({"symbol": ""}, "symbol", "empty"),
        ({"symbol": "x'); DROP TABLE t;--"}, "symbol", "not a ticker"),
        ({"symbol": "aapl"}, "symbol", "not a ticker"),
        ({"symbol": 42}, "symbol", "string"),
        ({"volume": 12.5}, "volume", "whole number"),
        ({"volume": "100"}, "volume", "whole number"),
        ({"volume": -3}, "volume", "negative"),
        ({"volume": 2**63}, "volume", "above the bound"),
        ({"volume": 10**11 + 1}, "volume", "above the bound"),
        ({"volume": True}, "volume", "whole number"),
        ({"ts": "2024-01-02T14:30:00"}, "ts", "no time zone"),
        ({"ts": "yesterday"}, "ts", "ISO 8601"),
        ({"ts": 1704205800}, "ts", "ISO 8601"),
        ({"open": "100"}, "open", "number"),
        ({"source": "carrier-pigeon"}, "source", "not one of"),
        ({"event_id": ""}, "event_id", "characters"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(changes, field, reason):
    with pytest.raises(InvalidRecord, match=reason) as caught:
        parse_tick(good(**changes))
    assert caught.value.field == field


def test_missing_and_unknown_fields():
    data = good()
    del data["close"]
    with pytest.raises(InvalidRecord, match=r"missing field.*close"):
        parse_tick(data)
    with pytest.raises(InvalidRecord, match=r"unknown field.*sql"):
        parse_tick(good(sql="DROP TABLE t"))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe\x00garbage", "UTF-8|malformed JSON"),
        (b"[1, 2, 3]", "JSON object"),
        (b'"just a string"', "JSON object"),
        (None, "empty message"),
        (b'{"open": NaN}', "malformed JSON"),
    ],
)
def test_decode_rejects_malformed_messages(payload, reason):
    with pytest.raises(InvalidRecord, match=reason):
        decode(payload)


def test_whole_float_volume_is_accepted_as_int():
    assert parse_tick(good(volume=1200.0)).volume == 1200


def test_validate_rechecks_code_built_ticks():
    broken = Tick("x", "AAPL", WHEN, 1.0, 0.5, 2.0, 1.0, 1, "simulator")
    with pytest.raises(InvalidRecord, match="above high"):
        validate(broken)
