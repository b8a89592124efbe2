"""The producer's accounting when Kafka goes away: counted, reported, never raised."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

import pipeline_lib.kafka_io.producer as producer_module
from pipeline_lib.kafka_io.producer import ProducerError, produce
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig
from tests.fakes import fake_settings

START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


class OutageProducer:
    """Acknowledges the first ``healthy`` sends; later ones expire at flush, or block."""

    def __init__(self, healthy: int, block_after: int | None = None, flush_raises=True):
        self.healthy = healthy
        self.block_after = block_after
        self.flush_raises = flush_raises
        self.sent = 0
        self.pending: list[Future] = []
        self.closed = False
        self.headers: set = set()

    def send(self, topic, key=None, value=None, headers=None):
        self.headers.add(tuple(headers or ()))
        if self.block_after is not None and self.sent >= self.block_after:
            raise KafkaTimeoutError("Failed to allocate memory within the configured max blocking")
        future = Future()
        if self.sent < self.healthy:
            future.success("metadata")
        else:
            self.pending.append(future)
        self.sent += 1
        return future

    def flush(self, timeout=None):
        for future in self.pending[: len(self.pending) // 2]:
            future.failure(KafkaTimeoutError("Expiring records: delivery timeout"))
        if self.flush_raises:
            raise KafkaTimeoutError(f"flush timed out after {timeout}s")

    def close(self, timeout=None):
        self.closed = True


def run(fake, n=100, skip=0):
    producer_module.kafka_producer = lambda settings, **kw: fake
    try:
        ticks = MarketSimulator(SimulatorConfig(seed=3, start=START))
        return produce(fake_settings(), ticks, max_records=n, ensure=False, skip=skip)
    finally:
        from pipeline_lib.clients.kafka import kafka_producer

        producer_module.kafka_producer = kafka_producer


def test_an_outage_longer_than_the_delivery_timeout_is_reported_not_raised():
    fake = OutageProducer(healthy=60)
    report = run(fake, n=100)
    assert fake.closed
    assert (report.sent, report.delivered, report.failed, report.undelivered) == (100, 60, 20, 20)
    assert not report.ok and report.first_unacknowledged == 60
    text = report.summary()
    assert "60 acknowledged, 20 failed, 20 unconfirmed" in text
    assert "NOT DELIVERED: 40 records" in text and "--skip 60" in text


def test_send_blocking_past_the_timeout_stops_and_says_where_to_resume():
    fake = OutageProducer(healthy=30, block_after=45, flush_raises=False)
    report = run(fake, n=100, skip=10)
    assert report.sent == 45 and report.delivered == 30
    assert "did not accept records" in report.stopped_because
    assert report.first_unacknowledged == 40  # positions count from the source's start


def test_a_healthy_run_is_ok():
    fake = OutageProducer(healthy=10**9, flush_raises=False)
    report = run(fake, n=50)
    assert report.ok and report.first_unacknowledged is None and report.delivered == 50
    assert "NOT DELIVERED" not in report.summary()
    assert fake.headers == {(("contract", b"ticks/1.0"),)}  # each message stamped


def test_skip_must_not_be_negative():
    with pytest.raises(ProducerError, match="skip"):
        run(OutageProducer(healthy=1), skip=-1)


def test_ticks_and_news_go_to_their_topics_and_a_resume_bound_counts_ticks_only():
    from pipeline_lib.records.news import News
    from pipeline_lib.records.schema import Tick
    from pipeline_lib.sources import source_from_parameters

    fake = OutageProducer(healthy=20_000)
    topics: list[str] = []
    send = fake.send
    fake.send = lambda topic, key=None, value=None, headers=None: (
        topics.append(topic) or send(topic, key, value)
    )
    producer_module.kafka_producer = lambda settings, **kw: fake
    settings = fake_settings()
    source = source_from_parameters(settings, stream="both", seed=3, start=START)
    try:
        report = produce(settings, source, max_records=24_000, ensure=False)
    finally:
        from pipeline_lib.clients.kafka import kafka_producer

        producer_module.kafka_producer = kafka_producer
    records = list(
        itertools.islice(
            source_from_parameters(settings, "simulator", stream="both", seed=3, start=START),
            report.sent,
        )
    )
    news = sum(isinstance(r, News) for r in records)
    assert news > 0 and report.sent == 24_000 + news
    assert report.sent_by_topic == {settings.topic: 24_000, settings.news_topic: news}
    assert [t for t, r in zip(topics, records, strict=True) if isinstance(r, Tick)] == [
        settings.topic
    ] * 24_000
    resume = report.first_unacknowledged
    assert resume == 20_000
    ticks_before = sum(isinstance(r, Tick) for r in records[:resume])
    assert report.counted_before_resume == ticks_before < resume  # news did not count
