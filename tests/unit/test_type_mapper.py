"""The BigQuery type mapper: every kind of the one type table both ways (standard and
legacy names, Arrow, Python), and the places that used to map types on their own."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pyarrow as pa
import pytest

from pipeline_lib.core.config import Settings
from pipeline_lib.records.schema import KINDS, LANDING_FIELDS, TICK_FIELDS, Kind, arrow_type
from pipeline_lib.records.streams import NEWS, TICKS
from pipeline_lib.sinks import SinkError
from pipeline_lib.sinks.bigquery import (
    TYPES,
    BigQueryTypeMapper,
    EmulatorQuirks,
    TableManager,
    bigquery_schema,
    evolution,
    run_summary,
)

pytestmark = pytest.mark.unit

LEGACY = {
    "STRING": "STRING",
    "TIMESTAMP": "TIMESTAMP",
    "FLOAT64": "FLOAT",
    "INT64": "INTEGER",
    "BOOL": "BOOLEAN",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_maps_to_bigquery_and_back_by_either_name(kind):
    standard = KINDS[kind].bigquery
    assert TYPES.to_bigquery(kind) == standard
    assert TYPES.legacy(standard) == LEGACY[standard]
    for name in (standard, LEGACY[standard], LEGACY[standard].lower()):
        assert TYPES.from_bigquery(name) == KINDS[kind]
    assert TYPES.standard(LEGACY[standard]) == TYPES.standard(standard) == standard
    assert TYPES.same(standard, LEGACY[standard])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_maps_to_arrow_and_back(kind):
    standard = KINDS[kind].bigquery
    assert TYPES.arrow_type(kind) == arrow_type(kind)  # the records' own Arrow columns
    assert TYPES.to_arrow(standard) == TYPES.to_arrow(LEGACY[standard]) == arrow_type(kind)
    assert TYPES.from_arrow(arrow_type(kind)) == standard


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_types_its_python_values(kind):
    assert TYPES.for_python(KINDS[kind].python) == KINDS[kind].bigquery


def test_a_boolean_field_of_a_newer_contract_is_a_bool_column():
    assert TYPES.for_python(bool) == "BOOL" and TYPES.legacy("BOOL") == "BOOLEAN"
    assert TYPES.from_bigquery("BOOLEAN").python is bool
    assert TYPES.to_arrow("BOOL") == pa.bool_() and TYPES.from_arrow(pa.bool_()) == "BOOL"
    assert TYPES.bigquery_types == {"STRING", "TIMESTAMP", "FLOAT64", "INT64", "BOOL"}


def test_names_that_are_not_ours_are_left_as_they_are_and_not_typed():
    assert TYPES.standard("NUMERIC") == "NUMERIC" and not TYPES.same("NUMERIC", "FLOAT64")
    with pytest.raises(KeyError):
        TYPES.from_bigquery("GEOGRAPHY")
    with pytest.raises(KeyError):
        TYPES.from_arrow(pa.date32())
    assert TYPES.for_python(dict) is None


def test_a_type_table_that_types_one_bigquery_type_two_ways_is_refused():
    with pytest.raises(ValueError, match="FLOAT64"):
        BigQueryTypeMapper(
            {"a": Kind(float, "FLOAT64", "float64"), "b": Kind(float, "FLOAT64", "float32")}
        )
    with pytest.raises(ValueError, match="int"):
        BigQueryTypeMapper({"a": Kind(int, "INT64", "int64"), "b": Kind(int, "STRING", "string")})


def test_the_streams_columns_and_the_run_summarys_come_from_the_mapper():
    for stream in (TICKS, NEWS):
        assert TYPES.columns((*stream.fields, *LANDING_FIELDS)) == stream.columns
    assert [(f.name, f.field_type) for f in bigquery_schema()] == [
        (f.name, KINDS[f.kind].bigquery) for f in (*TICK_FIELDS, *LANDING_FIELDS)
    ]
    assert run_summary.COLUMNS == (  # as the summary table was made before the mapper
        ("run", "STRING", "REQUIRED", "producer run: the id's prefix before ':'"),
        ("symbol", "STRING", "REQUIRED", "instrument"),
        ("first_ts", "TIMESTAMP", "REQUIRED", "earliest event time seen by the writer"),
        ("last_ts", "TIMESTAMP", "REQUIRED", "latest event time seen by the writer"),
        ("landed_at", "TIMESTAMP", "REQUIRED", "when the batch that wrote this row landed"),
    )


def test_query_parameters_and_new_columns_are_typed_by_their_values():
    when = datetime(2024, 1, 2, tzinfo=UTC)
    typed = {
        name: TYPES.parameter(name, value).type_
        for name, value in {"b": True, "i": 3, "f": 1.5, "s": "x", "t": when}.items()
    }
    assert typed == {"b": "BOOL", "i": "INT64", "f": "FLOAT64", "s": "STRING", "t": "TIMESTAMP"}
    with pytest.raises(TypeError, match="unsupported parameter"):
        TYPES.parameter("x", object())
    assert [evolution.column_type(v) for v in (True, 3, 1.5, "x")] == [
        "BOOL",
        "INT64",
        "FLOAT64",
        "STRING",
    ]
    assert [evolution.column_type(v) for v in (2**63, float("nan"), {}, [], None, when)] == [
        None
    ] * 6


class DdlClient:
    def __init__(self) -> None:
        self.ddl: list[str] = []

    def query(self, sql, **kwargs):
        self.ddl.append(sql)
        return SimpleNamespace(result=lambda **kwargs: None)


def test_the_emulators_ddl_adds_columns_of_the_types_the_pipeline_writes_only():
    from google.cloud import bigquery

    client = DdlClient()
    quirks = EmulatorQuirks(Settings.from_env({"PIPELINE_HOME": "/tmp/unused"}))
    columns = [bigquery.SchemaField("bid", "FLOAT"), bigquery.SchemaField("n", "INTEGER")]
    quirks.columns_added(client, "`p.d.t`", columns)
    assert client.ddl == [
        "ALTER TABLE `p.d.t` ADD COLUMN IF NOT EXISTS `bid` FLOAT64",
        "ALTER TABLE `p.d.t` ADD COLUMN IF NOT EXISTS `n` INT64",
    ]
    with pytest.raises(SinkError, match="GEOGRAPHY"):
        quirks.columns_added(client, "`p.d.t`", [bigquery.SchemaField("g", "GEOGRAPHY")])


def test_the_table_manager_holds_the_emulators_quirks_on_the_emulator_only():
    local = Settings.from_env({"PIPELINE_HOME": "/tmp/unused"})
    assert isinstance(TableManager(local).quirks, EmulatorQuirks)
    cloud = local.with_overrides(bigquery_emulator_host=None)
    assert TableManager(cloud).quirks is None
