"""A member frozen past its session timeout, then resumed (issue 18).

As a closed laptop lid, a paused VM or a long GC pause would: consumer A lands a
steady stream; A is frozen (SIGSTOP); B joins and, once A's session has expired,
takes every partition and lands the backlog in large batches; then A resumes
(SIGCONT) holding what it read before the freeze. A must not land it over B's
objects: every record must be in GCS and once in the BigQuery view. Run for the
ticks and for the news stream.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import pytest

from pipeline_lib.clients.kafka import SESSION_TIMEOUT_S, ensure_topic
from pipeline_lib.kafka_io.producer import produce
from pipeline_lib.records.news import News
from pipeline_lib.records.routes import route
from tests.helpers import (
    START,
    SYMBOLS,
    all_landed_once,
    bq_event_ids,
    committed_offsets,
    consumer_process,
    finish,
    simulated,
)

RECORDS = 12_000
RATE = 1_000


def records_of(stream: str) -> tuple[list, list[str]]:
    if stream == "ticks":
        ticks = simulated(RECORDS, seed=91, symbols=SYMBOLS)
        return ticks, [t.event_id for t in ticks]
    stories = [
        News(
            f"frozen:{SYMBOLS[i % len(SYMBOLS)]}:{i:08d}",
            SYMBOLS[i % len(SYMBOLS)],
            START + timedelta(milliseconds=100 * i),
            f"{SYMBOLS[i % len(SYMBOLS)]} story {i}",
            0.0,
            "neutral",
            "simulator",
        )
        for i in range(RECORDS)
    ]
    return stories, [s.news_id for s in stories]


@pytest.mark.parametrize(
    ("stream", "bq_write"), [("ticks", "load"), ("news", "load"), ("ticks", "storage")]
)
def test_a_member_frozen_past_its_session_timeout_loses_nothing_when_it_resumes(
    settings, stream, bq_write
):
    ensure_topic(settings, route(settings, stream).topic, partitions=3)
    records, ids = records_of(stream)
    reports = {}
    producer = threading.Thread(
        target=lambda: reports.setdefault("produced", produce(settings, records, rate=RATE))
    )
    producer.start()

    def member(*args: str):
        return consumer_process(settings, "--bq-write", bq_write, *args, stream=stream)

    a = member("--batch-size", "1000", "--until-idle", "10")
    deadline = time.monotonic() + 60
    while not any(committed_offsets(settings, stream).values()):  # A has joined and lands
        assert time.monotonic() < deadline, "A never committed"
        time.sleep(0.5)
    time.sleep(1.5)
    a.send_signal(signal.SIGSTOP)  # the lid closes
    try:
        b = member("--batch-size", "10000", "--until-idle", "10")
        time.sleep(SESSION_TIMEOUT_S + 10)  # A's session expires; B takes its partitions
    finally:
        a.send_signal(signal.SIGCONT)  # the lid opens: A wakes up holding stale records
    frozen, joined = finish(a, timeout=240), finish(b, timeout=240)
    producer.join(timeout=120)
    assert reports["produced"].ok, reports["produced"].summary()
    finish(member("--until-idle", "5"), timeout=240)

    # A held records when it froze and dropped them on waking, uncommitted.
    assert frozen["discarded"] > 0, frozen
    assert joined["consumed"] > 0
    all_landed_once(settings, ids, stream)
    if bq_write == "storage":  # and once in the raw table itself, not only in the view
        raw = bq_event_ids(settings, deduplicated=False, stream=stream)
        assert set(raw.values()) == {1}, [i for i, n in raw.items() if n > 1][:3]
