"""Figure 3: our producer beside Kafka's Java ProducerPerformance and confluent-kafka."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.services import count_for, services, simulated_ticks
from pipeline_lib.clients.kafka import java_security_properties, librdkafka_security
from pipeline_lib.core.config import Settings
from pipeline_lib.records.schema import encode


def _java_producer_perf(settings: Settings, payloads: list[bytes]) -> float:
    from pipeline_lib.local.kafka import KafkaBroker

    libs = KafkaBroker(settings).libs_dir
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as handle:
        handle.write(b"\n".join(payloads))
        payload_file = handle.name
    # Credentials in a private file, not on a command line anyone may read.
    with tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False) as handle:
        handle.write("".join(f"{k}={v}\n" for k, v in java_security_properties(settings).items()))
        security_file = handle.name
    try:
        result = subprocess.run(
            [
                "java",
                "-Xmx512m",
                "-cp",
                f"{libs}/*",
                "org.apache.kafka.tools.ProducerPerformance",
                "--topic",
                settings.topic,
                "--num-records",
                str(len(payloads)),
                "--payload-file",
                payload_file,
                "--throughput",
                "-1",
                "--producer-props",
                f"bootstrap.servers={settings.kafka_bootstrap_servers}",
                "acks=all",
                "enable.idempotence=true",
                "compression.type=lz4",
                "linger.ms=20",
                "batch.size=262144",
                "--producer.config",
                security_file,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        Path(payload_file).unlink(missing_ok=True)
        Path(security_file).unlink(missing_ok=True)
    last = [line for line in result.stdout.splitlines() if "records/sec" in line]
    if result.returncode != 0 or not last:
        raise RuntimeError(f"ProducerPerformance failed: {result.stderr[-1500:]}")
    return float(last[-1].split("records sent,")[1].split("records/sec")[0].strip())


def _confluent_rate(settings: Settings, ticks: list, payloads: list[bytes]) -> float | None:
    try:
        from confluent_kafka import Producer
    except ImportError:
        return None
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **librdkafka_security(settings),
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 20,
            "batch.size": 262144,
        }
    )
    started = time.perf_counter()
    for i, (tick, value) in enumerate(zip(ticks, payloads, strict=True)):
        while True:
            try:
                producer.produce(settings.topic, value=value, key=tick.symbol.encode())
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(60)
    return len(ticks) / (time.perf_counter() - started)


def producer_ceiling(size: str) -> dict:
    """Figure 3: our producer vs Kafka's Java ProducerPerformance and confluent-kafka.

    Same broker, same settings (acks=all, idempotence, lz4, 20 ms linger, 256 KB
    batches) and the same payloads: our JSON ticks, also fed to the Java tool.
    """
    from pipeline_lib.clients.kafka import ensure_topic
    from pipeline_lib.kafka_io.producer import produce

    n = count_for(size, 100_000, 2_000)
    ticks = simulated_ticks(n, seed=6)
    payloads = [encode(t) for t in ticks]
    settings = services().fresh("producer")
    ensure_topic(settings)
    ours = produce(settings, ticks).rate
    java = _java_producer_perf(settings, payloads)
    confluent = _confluent_rate(settings, ticks, payloads)
    return {
        "name": "producer_ceiling",
        "records": n,
        "record_bytes": round(statistics.mean(len(p) for p in payloads)),
        "pipeline_lib_records_per_s": round(ours),
        "java_producer_perf_records_per_s": round(java),
        "confluent_kafka_records_per_s": round(confluent) if confluent else "not installed",
        "ratio_to_java": round(ours / java, 3),
        "ratio_to_confluent": round(ours / confluent, 3) if confluent else None,
        "goal": "measured, no goal: what the choice of kafka-python costs",
        "met": True,
    }
