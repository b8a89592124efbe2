"""Brokers of a real three-node cluster die while ticks stream; nothing acknowledged is lost.

The plan follows Kafka's own replication system tests and Dapr's certification plan:
stream at a steady rate with the sink consumer running, fail brokers (SIGKILL, as a
crash would), bring them back, then count what landed where against what Kafka
acknowledged. Topics have replication factor 3 and min.insync.replicas 2.
"""

from __future__ import annotations

import time

import pytest

from pipeline_lib import local
from pipeline_lib.clients.kafka import ensure_topic
from pipeline_lib.ops import cluster
from tests.helpers import (
    SteadyProducer,
    all_landed_once,
    bq_event_ids,
    consumer_process,
    gcs_event_ids,
    nothing_left,
)


@pytest.fixture
def healthy(cluster_settings):
    """The cluster with every broker up and the test topic fully replicated; every broker
    is running again afterwards, whatever the test did."""
    ensure_topic(cluster_settings)
    cluster.wait_for(cluster_settings, cluster.fully_replicated, "all replicas in sync")
    yield cluster_settings
    for node in local.kafka_nodes(cluster_settings):
        if not node.running_pid():
            node.up()
    cluster.wait_for(cluster_settings, cluster.fully_replicated, "all replicas in sync", 90)


def member(settings, idle: float):
    return consumer_process(
        settings, "--until-idle", str(idle), "--batch-size", "1000", "--flush-interval", "0.5"
    )


def report_of(process, timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_a_leader_killed_mid_stream_loses_no_acknowledged_tick(healthy):
    settings = healthy
    topic = settings.topic
    victim = cluster.describe_cluster(settings).partition(topic, 0).leader
    consumer = member(settings, idle=15)
    with SteadyProducer(settings, 30_000, rate=1_000, seed=71) as producer:
        started = time.monotonic()
        time.sleep(10)  # about a third of the way in
        local.stop_broker(settings, victim, kill=True)
        moved = cluster.wait_for(
            settings,
            lambda s: (
                s.partition(topic, 0).leader not in (-1, victim)
                and victim not in s.partition(topic, 0).isr
            ),
            "a new leader for partition 0",
            timeout_s=30,
        )
        assert moved.partition(topic, 0).under_replicated
        time.sleep(max(0.0, started + 20 - time.monotonic()))  # two thirds of the way in
        local.start_broker(settings, victim)
    code, _, err = report_of(consumer)
    assert code == 0, err[-3000:]
    ids = producer.check()  # every one of the 30,000 acknowledged, none failed
    assert len(producer.acknowledged) == 30_000
    all_landed_once(settings, ids)
    cluster.wait_for(settings, cluster.fully_replicated, "broker back in sync", 90)
    nothing_left(settings)


def test_two_brokers_down_below_min_isr_the_producer_counts_what_it_could_not_deliver(healthy):
    settings = healthy.with_overrides(delivery_timeout_s=5.0)
    producer = SteadyProducer(settings, 6_000, rate=400, seed=72)
    with producer:
        time.sleep(4)
        local.stop_broker(settings, 2, kill=True)
        local.stop_broker(settings, 3, kill=True)
        time.sleep(15)  # three delivery timeouts with one broker of three
    report = producer.report
    assert report is not None and not report.ok
    assert report.failed + report.undelivered > 0
    assert report.delivered == len(producer.acknowledged) > 0
    assert "NOT DELIVERED" in report.summary()
    assert f"{report.failed + report.undelivered:,} records" in report.summary()

    for node in (2, 3):
        local.start_broker(settings, node)
    cluster.wait_for(settings, cluster.fully_replicated, "all replicas in sync", 90)
    code, _, err = report_of(member(settings, idle=5))
    assert code == 0, err[-3000:]
    landed = bq_event_ids(settings)
    acknowledged = set(producer.acknowledged_ids())
    produced = {t.event_id for t in producer.ticks}
    assert acknowledged <= set(landed), f"{len(acknowledged - set(landed))} acknowledged lost"
    assert set(landed) <= produced and set(landed.values()) == {1}
    assert acknowledged <= set(gcs_event_ids(settings))


def test_the_group_coordinator_killed_mid_consume_loses_nothing(healthy):
    settings = healthy
    consumer = member(settings, idle=20)
    with SteadyProducer(settings, 12_000, rate=600, seed=73) as producer:
        time.sleep(6)
        coordinator = cluster.group_coordinator(settings)
        local.stop_broker(settings, coordinator, kill=True)
        time.sleep(8)
        local.start_broker(settings, coordinator)
    code, _, err = report_of(consumer)
    # The consumer carries on (a new coordinator is found), or stops with a clear error.
    assert code == 0 or ("error:" in err and "Traceback" not in err), err[-3000:]
    code, _, err = report_of(member(settings, idle=5))  # the restart
    assert code == 0, err[-3000:]
    all_landed_once(settings, producer.check())
    nothing_left(settings)


def test_a_topic_created_with_a_broker_down_gets_its_third_copy_when_it_returns(healthy):
    """KRaft places replicas on a fenced (registered but down) broker when it must: the
    topic is usable at once, under-replicated until the broker is back."""
    topic = f"{healthy.topic}-new"
    local.stop_broker(healthy, 3)  # a clean stop this time
    cluster.wait_for(healthy, lambda s: not s.brokers[2].up, "broker 3 down")
    assert ensure_topic(healthy, topic) is True
    state = cluster.describe_cluster(healthy, [topic])
    assert all(len(p.replicas) == 3 and 3 not in p.isr for p in state.partitions)
    local.start_broker(healthy, 3)
    cluster.wait_for(healthy, cluster.fully_replicated, "third copies in sync", 90, [topic])
