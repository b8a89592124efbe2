"""A member whose GCS write is held back across a rebalance (issue 18).

Member A's first upload hangs (a slow network, a stalled emulator) while its next
batch waits, so A stops polling and the group drops it after its poll interval. B
takes every partition and lands the whole backlog in larger objects that start at
the same offsets. Then A's upload goes through: a late write that must not shrink
B's objects. Run in-process, for the ticks and the news stream.
"""

from __future__ import annotations

import threading

import pytest

from pipeline_lib.clients.kafka import ensure_topic, kafka_consumer
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.kafka_io.producer import produce
from pipeline_lib.records.routes import route
from pipeline_lib.sinks.bigquery import BigQuerySink
from pipeline_lib.sinks.gcs import GcsSink
from tests.helpers import all_landed_once
from tests.integration.test_frozen_member import records_of


class HeldGcs(GcsSink):
    """A GCS sink whose first write waits until the test releases it."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.held = threading.Event()
        self.release = threading.Event()

    def write(self, batch):
        if not self.held.is_set():
            self.held.set()
            assert self.release.wait(180), "never released"
        return super().write(batch)


class ImpatientMember(SinkConsumer):
    """Left out of the group after 3 s without a poll (the default is 5 minutes)."""

    def _kafka_consumer(self, listener):
        consumer = kafka_consumer(
            self.settings,
            group=self.group,
            client_id="impatient",
            max_poll_records=500,
            max_poll_interval_ms=3_000,
        )
        consumer.subscribe([self.topic], listener=listener)
        consumer.topics()
        return consumer


def in_thread(run) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target():
        try:
            out["report"] = run()
        except BaseException as error:  # reported by the test
            out["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


@pytest.mark.parametrize("stream", ["ticks", "news"])
def test_a_late_upload_after_a_rebalance_never_shrinks_the_new_owners_objects(settings, stream):
    ensure_topic(settings, route(settings, stream).topic, partitions=3)
    records, ids = records_of(stream)
    records, ids = records[:6_300], ids[:6_300]
    assert produce(settings, records[:300]).ok
    held = HeldGcs(settings)
    a = ImpatientMember(
        settings,
        sinks=[held, BigQuerySink(settings, stream=stream)],
        batch_size=10_000,
        flush_interval=0.5,
        stream=stream,
    )
    a_thread, a_out = in_thread(lambda: a.run(until_idle=8, handle_signals=False))
    try:
        assert held.held.wait(60), "A never wrote"
        assert produce(settings, records[300:]).ok  # A's next batch waits for the held one
        b = SinkConsumer(settings, batch_size=10_000, flush_interval=0.5, stream=stream)
        b_thread, b_out = in_thread(lambda: b.run(until_idle=5, handle_signals=False))
        b_thread.join(180)
        assert "error" not in b_out, b_out
        assert b_out["report"].written == len(ids)  # B landed everything, A's part too
    finally:
        held.release.set()  # A's stale upload goes through now
        a_thread.join(180)
    assert "error" not in a_out, a_out
    all_landed_once(settings, ids, stream)
    assert a_out["report"].fenced == 1  # A's stale batch was not committed
