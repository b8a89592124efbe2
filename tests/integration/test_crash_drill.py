"""Notebook 03's crash drill on the real broker and emulators: a consumer SIGKILLed
between the sinks and the commit; the Storage Write API leaves each record once in
the raw table, load jobs leave the killed batch twice (the view hides it)."""

from __future__ import annotations

import pytest

from pipeline_lib.lessons.crash_drill import run_crash_drill

pytestmark = pytest.mark.integration


def test_the_crash_drill_finds_each_tick_once_with_the_write_api(settings):
    counts = run_crash_drill(settings, ticks=3_000, batch_size=500, kill_at=3)
    assert counts.bq_write == "storage"
    assert counts.in_kafka == 3_000 and counts.written_not_committed > 0
    assert counts.each_once and counts.events == 3_000 and counts.duplicates == 0
    assert "each once" in counts.line()


def test_the_crash_drill_shows_load_jobs_doubling_the_killed_batch(settings):
    counts = run_crash_drill(settings, ticks=3_000, batch_size=500, kill_at=3, bq_write="load")
    assert counts.records == counts.in_kafka == 3_000
    assert counts.duplicates == counts.written_not_committed > 0
    assert not counts.each_once and "duplicates" in counts.line()
