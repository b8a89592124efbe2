"""The news stream on the real broker and emulators: both streams produced in one run,
landed once each by `consume`, and bad stories routed to the news dead-letter topic."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

from pipeline_lib.analysis.monitor import bigquery_event_ids, gcs_event_ids
from pipeline_lib.kafka_io.dead_letters import read_dead_letters
from pipeline_lib.kafka_io.producer import produce, send_raw
from pipeline_lib.records.news import News, encode, make_news_id, scored
from pipeline_lib.records.routes import route
from pipeline_lib.records.schema import Tick
from pipeline_lib.sources import source_from_parameters, stream
from tests.helpers import START


def cli(settings, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.to_env()}
    return subprocess.run(
        [sys.executable, "-m", "pipeline_lib", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ticks_and_news_produced_together_land_once_each(settings):
    source = source_from_parameters(settings, stream="both", seed=21, start=START.isoformat())
    records = list(stream(source, max_records=12_000))
    ticks = [r.event_id for r in records if isinstance(r, Tick)]
    news = [r.news_id for r in records if isinstance(r, News)]
    assert len(ticks) == 12_000 and len(news) > 3
    report = produce(settings, records)
    assert report.ok and report.sent_by_topic == {
        settings.topic: len(ticks),
        settings.news_topic: len(news),
    }
    # Twice: the second run finds nothing new, and copies would show in the dedup view.
    for _ in range(2):
        done = cli(settings, "consume", "--until-idle", "3", "--json", "--quiet")
        assert done.returncode == 0, done.stderr[-2000:]
    reports = orjson.loads(done.stdout.splitlines()[-1])
    assert set(reports) == {"ticks", "news"}
    assert reports["news"]["consumed"] == 0 and reports["ticks"]["consumed"] == 0
    for name, ids in (("ticks", ticks), ("news", news)):
        landed = bigquery_event_ids(settings, stream=name)
        assert set(landed) == set(ids) and set(landed.values()) == {1}
        assert set(gcs_event_ids(settings, stream=name)) == set(ids)
    status = cli(settings, "status", "--json")
    document = orjson.loads(status.stdout)
    assert document["news"]["bigquery"]["events"] == len(news)
    assert document["news"]["kafka"]["lag"] == 0


def test_bad_stories_become_dead_letters_and_good_ones_land(settings):
    good = [
        scored(make_news_id("it", s, "u"), s, START, f"{s} beats estimates", "simulator")
        for s in ("AAPL", "MSFT", "IBM")
    ]
    template = orjson.loads(encode(good[0]))
    bad = {
        "empty headline": orjson.dumps({**template, "headline": ""}),
        "100 kB headline": orjson.dumps({**template, "headline": "y" * 100_000}),
        "bad timestamp": orjson.dumps({**template, "ts": "20240105T163000"}),
        "unknown symbol": orjson.dumps({**template, "symbol": "x'; DROP TABLE t;--"}),
        "invalid UTF-8": b'{"headline": "\xc3\x28"}',
    }
    produce(settings, good[:2])
    for value in bad.values():
        send_raw(settings, value, key=b"AAPL", stream="news")
    produce(settings, good[2:])
    done = cli(settings, "consume", "--stream", "news", "--until-idle", "3", "--json", "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    report = orjson.loads(done.stdout.splitlines()[-1])
    assert report["consumed"] == 8 and report["dead_letters"] == 5 and report["written"] == 3
    letters = read_dead_letters(settings, stream="news")
    assert len({(d.partition, d.offset) for d in letters}) == 5  # at least once: by source
    assert {d.topic for d in letters} == {route(settings, "news").topic}
    fields = {d.field for d in letters}
    assert {"headline", "ts", "symbol"} <= fields
    assert bigquery_event_ids(settings, stream="news") == dict.fromkeys(
        (g.news_id for g in good), 1
    )
    assert read_dead_letters(settings) == []  # the ticks' dead-letter topic saw none
