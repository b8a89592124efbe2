"""The real local broker: topics, keyed produce, consume everything back."""

from collections import Counter, defaultdict

from kafka import KafkaConsumer, KafkaProducer

from pipeline_lib.clients.kafka import ensure_topic, kafka_admin


def test_thousand_keyed_messages_round_trip(settings):
    assert ensure_topic(settings, partitions=3) is True
    assert ensure_topic(settings, partitions=3) is False  # idempotent

    admin = kafka_admin(settings)
    try:
        described = admin.describe_topics([settings.topic])[0]
    finally:
        admin.close()
    assert len(described["partitions"]) == 3

    symbols = ["AAPL", "MSFT", "IBM", "GOOG", "FB"]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5)
    futures = [
        producer.send(settings.topic, key=symbols[i % 5].encode(), value=f"{i}".encode())
        for i in range(1000)
    ]
    producer.flush(timeout=30)
    metadata = [f.get(timeout=10) for f in futures]
    producer.close()
    assert {m.partition for m in metadata} <= {0, 1, 2}

    consumer = KafkaConsumer(
        settings.topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    received = []
    try:
        for message in consumer:
            received.append(message)
            if len(received) == 1000:
                break
    finally:
        consumer.close()

    assert sorted(int(m.value) for m in received) == list(range(1000))
    partitions_per_key = defaultdict(set)
    for m in received:
        partitions_per_key[m.key].add(m.partition)
    assert all(len(p) == 1 for p in partitions_per_key.values()), "a key must stay on one partition"
    assert Counter(m.key for m in received) == {s.encode(): 200 for s in symbols}
    # Per-key order is kept: values of one key arrive in produce order.
    for key in partitions_per_key:
        values = [int(m.value) for m in received if m.key == key]
        assert values == sorted(values)
