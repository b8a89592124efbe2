"""The whole-poll tick decoder: when it answers, it agrees with the per-record one.

For every value of a poll it accepts, the per-record decoder must accept the value
too and give the same record, and the GCS line must be the record's canonical JSON;
any value the per-record decoder refuses must make the fast path answer ``None``.
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime

import orjson
import pytest

from pipeline_lib.records.columns import decode_ticks, records_to_table, table_to_records
from pipeline_lib.records.schema import TICK_FIELDS, InvalidRecord, Tick, encode
from pipeline_lib.records.streams import TICKS as TICK_STREAM
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig

pytestmark = pytest.mark.unit

WHEN = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
TICKS = list(itertools.islice(MarketSimulator(SimulatorConfig(seed=7, start=WHEN)), 40))
VALUES = [encode(t) for t in TICKS]
BASE = orjson.loads(VALUES[0])


def changed(**changes) -> bytes:
    return orjson.dumps({**BASE, **changes})


def without(name: str) -> bytes:
    return orjson.dumps({k: v for k, v in BASE.items() if k != name})


def replaced(old: bytes, new: bytes) -> bytes:
    assert old in VALUES[0]
    return VALUES[0].replace(old, new, 1)


VARIANTS: dict[str, bytes | None] = {
    # valid, but not as our producer writes them: accepted, lines re-encoded
    "spaces": json.dumps(BASE).encode(),
    "keys reordered": orjson.dumps(dict(reversed(list(BASE.items())))),
    "int prices": changed(open=100, high=101, low=99, close=100),
    "price with a trailing zero": replaced(b'"adj_close":null', b'"adj_close":1.50'),
    "tiny price as a plain decimal": replaced(b'"adj_close":null', b'"adj_close":0.000001'),
    "tiny price with an exponent": replaced(b'"adj_close":null', b'"adj_close":1e-6'),
    "adj_close absent": without("adj_close"),
    "produced_at absent": without("produced_at"),
    "produced_at given": changed(produced_at="2024-01-02T14:30:00.000123Z"),
    "unicode escape in the id": replaced(b'"event_id":"s', b'"event_id":"\\u0073'),
    "quote in the id": changed(event_id='a"b'),
    "backslash in the id": changed(event_id="a\\b"),
    "non-ascii id": changed(event_id="café"),
    "offset time": changed(ts="2024-01-02T15:30:00+01:00"),
    "+00:00 time": changed(ts="2024-01-02T14:30:00+00:00"),
    "zero microseconds": changed(ts="2024-01-02T14:30:00.000000Z"),
    "millisecond time": changed(ts="2024-01-02T14:30:00.123Z"),
    "volume as a whole float": changed(volume=5.0),
    "pretty printed": orjson.dumps(BASE, option=orjson.OPT_INDENT_2),
    # invalid: dead letters on the per-record path
    "null value": None,
    "empty": b"",
    "spaces only": b"   ",
    "array": b"[1, 2]",
    "empty object": b"{}",
    "two objects": VALUES[0] + b" " + VALUES[1],
    "trailing garbage": VALUES[0] + b"x}",
    "byte order mark": b"\xef\xbb\xbf" + VALUES[0],
    "invalid utf-8": changed(event_id="x").replace(b'"x"', b'"\xff"'),
    "NaN price": replaced(b'"adj_close":null', b'"adj_close":NaN'),
    "Infinity price": replaced(b'"adj_close":null', b'"adj_close":Infinity'),
    "missing symbol": without("symbol"),
    "null symbol": changed(symbol=None),
    "lower-case symbol": changed(symbol="aapl"),
    "injection symbol": changed(symbol="x'; DROP TABLE t;--"),
    "unknown field": changed(exchange="XNAS"),
    "unknown fields of every kind": changed(a=None, b=[1, {"c": 2}], d={"e": "f"}, g=1.5, h=True),
    "too many unknown fields": changed(**{f"f{i}": i for i in range(101)}),
    "duplicate key": VALUES[0][:-1] + b',"symbol":"MSFT"}',
    "string price": changed(open="190.0"),
    "bool price": changed(open=True),
    "negative price": changed(low=-1.0),
    "price above the bound": changed(high=2e9, close=2e9),
    "low above high": changed(low=BASE["high"] + 1),
    "close outside": changed(close=BASE["high"] + 1),
    "fractional volume": changed(volume=5.5),
    "negative volume": changed(volume=-1),
    "volume above the bound": changed(volume=10**11 + 1),
    "volume above int64": replaced(b'"volume":', b'"volume":99999999999999999999'),
    "unknown source": changed(source="bloomberg"),
    "empty id": changed(event_id=""),
    "long id": changed(event_id="x" * 129),
    "control character in the id": changed(event_id="a\tb"),
    "naive time": changed(ts="2024-01-02T14:30:00"),
    "time in 2100": changed(ts="2100-01-01T00:00:00Z"),
    "time before 1900": changed(ts="1899-12-31T23:59:59Z"),
    "February 30": changed(ts="2024-02-30T00:00:00Z"),
    "time as a number": changed(ts=1704205800),
    "nested object": changed(symbol={"a": 1}),
}


def agrees(values: list[bytes | None]) -> bool:
    """Check the fast path against the per-record (tolerant) reader; True if it
    answered."""
    result = decode_ticks(values)
    if result is None:
        return False
    table, lines, extras = result
    records = table_to_records(table, Tick)
    assert len(records) == len(lines) == len(values)
    extras = extras or [None] * len(values)
    for value, record, line, extra in zip(values, records, lines, extras, strict=True):
        expected, unknown = TICK_STREAM.read(value)  # raises: the fast path took a bad value
        assert record == expected and extra == unknown
        assert line == (value if unknown else encode(expected))
    return True


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_variant_alone_and_among_good_values_agrees_with_the_per_record_decoder(name):
    value = VARIANTS[name]
    try:
        TICK_STREAM.read(value)
        valid = True
    except InvalidRecord:
        valid = False
    for values in ([value], [*VALUES[:5], value, *VALUES[5:10]]):
        answered = agrees(values)
        if name.startswith("unknown field"):
            assert answered, f"{name}: a newer contract's records stay on the fast path"
        if not valid:
            assert not answered, f"{name}: a bad value in the poll must send it down the slow path"


def test_our_producers_values_take_the_fast_path_and_are_kept_as_they_are():
    table, lines, extras = decode_ticks(VALUES)
    assert extras is None
    assert all(line is value for line, value in zip(lines, VALUES, strict=True))
    assert table_to_records(table, Tick) == TICKS


def test_valid_values_not_as_our_producer_writes_them_are_written_again():
    values = [VARIANTS["spaces"], VARIANTS["keys reordered"], VARIANTS["unicode escape in the id"]]
    assert agrees(values)
    _, lines, _ = decode_ticks(values)
    assert all(line != value for line, value in zip(lines, values, strict=True))


def test_prices_of_every_magnitude_are_written_as_orjson_writes_them():
    rng = random.Random(3)
    ticks = []
    for i in range(3000):
        price = rng.choice(
            [
                round(rng.uniform(0, 10 ** rng.randint(-6, 9)), rng.randint(0, 12)),
                float(rng.randint(1, 10**9)),
                rng.uniform(1e-9, 1e9),
            ]
        )
        if price <= 0:
            price = 1e-9
        ts = datetime.fromtimestamp(rng.randint(-2_000_000_000, 4_000_000_000), UTC)
        ticks.append(Tick(f"t:X:{i}", "X", ts, price, price, price, price, i, "csv", price))
    values = [encode(t) for t in ticks]
    assert agrees(values)
    # whole-number prices written as integers ("5" for 5.0): accepted, re-encoded
    bare = [v.replace(b".0,", b",") for v in values]
    assert sum(b != v for b, v in zip(bare, values, strict=True)) > 100
    assert agrees(bare)


def test_records_and_columns_round_trip():
    table = records_to_table(TICKS, TICK_FIELDS)
    assert table_to_records(table, Tick) == TICKS
    assert records_to_table([], TICK_FIELDS).num_rows == 0
