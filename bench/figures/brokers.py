"""What the brokers cost and do: replication (figure 8), a leader's failover (figure 9)
and TLS with SCRAM logins (secure_kafka).
"""

from __future__ import annotations

import statistics
import time

from bench.services import count_for, services, simulated_ticks
from pipeline_lib.core.config import Settings
from pipeline_lib.records.schema import encode


def replication_cost(size: str) -> dict:
    """Figure 8: producer throughput on 3 brokers with RF 3 (acks from 2+ copies) ÷ on
    1 broker with RF 1: the price of surviving a broker failure. Alternated, 2 rounds."""
    from pipeline_lib.clients.kafka import ensure_topic
    from pipeline_lib.kafka_io.producer import produce

    n = count_for(size, 100_000, 2_000)
    ticks = simulated_ticks(n, seed=8)
    single = services().fresh("rf1")
    replicated = services().cluster("rf3")
    ensure_topic(single)
    ensure_topic(replicated)
    rates: dict[str, list[float]] = {"rf1": [], "rf3": []}
    for _ in range(2):
        rates["rf1"].append(produce(single, ticks, ensure=False).rate)
        rates["rf3"].append(produce(replicated, ticks, ensure=False).rate)
    rf1, rf3 = statistics.median(rates["rf1"]), statistics.median(rates["rf3"])
    return {
        "name": "replication_cost",
        "records": n,
        "one_broker_rf1_records_per_s": round(rf1),
        "three_brokers_rf3_records_per_s": round(rf3),
        "ratio_rf3_to_rf1": round(rf3 / rf1, 3),
        "goal": "measured, no goal: what replication costs the producer (acks=all)",
        "met": True,
    }


def failover(size: str) -> dict:
    """Figure 9: SIGKILL the leader of partition 0 while sending to it at a steady rate;
    seconds until the first record sent after the kill is acknowledged. Median of 3
    (1 at tiny size); the broker is restarted and back in sync between rounds."""
    from pipeline_lib import local
    from pipeline_lib.clients.kafka import ensure_topic, kafka_producer
    from pipeline_lib.ops import cluster

    rounds = 3 if size == "full" else 1
    settings = services().cluster("failover")
    ensure_topic(settings)
    payload = encode(simulated_ticks(1, seed=9)[0])
    seconds: list[float] = []
    victims: list[dict] = []
    for _ in range(rounds):
        cluster.wait_for(settings, cluster.fully_replicated, "all replicas in sync", 90)
        state = cluster.describe_cluster(settings)
        victim = state.partition(settings.topic, 0).leader
        victims.append({"broker": victim, "was_quorum_leader": victim == state.quorum_leader})
        producer = kafka_producer(settings)
        acknowledged: list[tuple[float, float]] = []  # (sent, acknowledged) monotonic
        killed_at = None
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                sent = time.monotonic()
                producer.send(settings.topic, value=payload, partition=0).add_callback(
                    lambda _m, sent=sent, log=acknowledged: log.append((sent, time.monotonic()))
                )
                if killed_at is None and sent > deadline - 57:  # 3 s of steady sending
                    local.stop_broker(settings, victim, kill=True)
                    killed_at = time.monotonic()
                if killed_at and any(s > killed_at for s, _ in acknowledged):
                    break
                time.sleep(0.005)
            after = [a for s, a in acknowledged if killed_at and s > killed_at]
            if not after:
                raise RuntimeError("no record sent after the kill was acknowledged within 60 s")
            seconds.append(min(after) - killed_at)
        finally:
            producer.close(timeout=10)
            if not local.KafkaBroker(settings, node_id=victim).running_pid():
                local.start_broker(settings, victim)
    cluster.wait_for(settings, cluster.fully_replicated, "all replicas in sync", 90)
    return {
        "name": "failover",
        "rounds": rounds,
        "seconds": [round(s, 2) for s in seconds],
        "killed": victims,
        "median_s": round(statistics.median(seconds), 2),
        "goal": "measured, no goal: broker.session.timeout.ms is 6 s on the local cluster",
        "met": True,
    }


def _kafka_read_rate(settings: Settings, n: int) -> float:
    """Records per second the sink consumer reads and decodes from Kafka, no sinks."""
    from pipeline_lib.kafka_io.consumer import SinkConsumer

    report = SinkConsumer(settings, sinks=[], create_topics=False).run(max_records=n, until_idle=60)
    if report.consumed < n:
        raise RuntimeError(f"read {report.consumed} of {n} records: {report.stopped_because}")
    return report.consumed / max(report.active_seconds or report.seconds, 1e-9)


def secure_kafka(size: str) -> dict:
    """Figure: what TLS and SCRAM logins cost. Our producer and our consumer (reading
    and decoding, no sinks) on the plaintext broker and on a broker in secure mode
    (SASL_SSL, SCRAM-SHA-512, ACLs), alternated, 2 rounds each, same ticks."""
    from pipeline_lib.clients.kafka import ensure_topic
    from pipeline_lib.kafka_io.producer import produce

    n = count_for(size, 100_000, 2_000)
    ticks = simulated_ticks(n, seed=12)
    rates: dict[str, dict[str, list[float]]] = {
        k: {"produce": [], "consume": []} for k in ("plaintext", "sasl_ssl")
    }
    for round_ in range(2):
        for kind in ("plaintext", "sasl_ssl"):
            label = f"{kind}-{round_}"
            settings = services().secure(label) if kind == "sasl_ssl" else services().fresh(label)
            ensure_topic(settings)
            produced = produce(settings, ticks, ensure=False)
            if produced.delivered != n:
                raise RuntimeError(f"{kind}: {produced.summary()}")
            rates[kind]["produce"].append(produced.rate)
            rates[kind]["consume"].append(_kafka_read_rate(settings, n))
    median = {k: {op: statistics.median(v) for op, v in ops.items()} for k, ops in rates.items()}
    return {
        "name": "secure_kafka",
        "records": n,
        "produce_records_per_s": {k: round(v["produce"]) for k, v in median.items()},
        "consume_records_per_s": {k: round(v["consume"]) for k, v in median.items()},
        "produce_ratio_secure_to_plaintext": round(
            median["sasl_ssl"]["produce"] / median["plaintext"]["produce"], 3
        ),
        "consume_ratio_secure_to_plaintext": round(
            median["sasl_ssl"]["consume"] / median["plaintext"]["consume"], 3
        ),
        "goal": "measured, no goal: what TLS and SCRAM cost the producer and the consumer",
        "met": True,
    }
