"""The crash drill's counts: what notebook 03 prints and shows."""

from __future__ import annotations

import pytest

from pipeline_lib.lessons.crash_drill import CrashCounts, drill_table

pytestmark = pytest.mark.unit


def counts(bq_write: str, rows: int) -> CrashCounts:
    return CrashCounts("p.d.t", bq_write, 3_000, 1_000, 1_500, rows, 3_000, 3_000)


def test_each_once_only_when_the_table_holds_every_kafka_record_once():
    once, doubled = counts("storage", 3_000), counts("load", 3_500)
    assert once.each_once and once.duplicates == 0 and once.written_not_committed == 500
    assert not doubled.each_once and doubled.duplicates == 500
    assert "each once (BQ_WRITE=storage)" in once.line()
    assert "500 duplicates (BQ_WRITE=load)" in doubled.line()
    assert "\n" not in once.line()
    missing = CrashCounts("p.d.t", "storage", 3_000, 1_000, 1_500, 2_900, 2_900, 2_900)
    assert not missing.each_once  # fewer rows than Kafka records is not "once"


def test_the_table_has_one_row_per_writer():
    table = drill_table([counts("storage", 3_000), counts("load", 3_500)])
    assert list(table.index) == ["storage", "load"]
    assert table.loc["load", "duplicates"] == 500 and table.loc["storage", "rows now"] == 3_000
