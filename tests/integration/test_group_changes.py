"""Members join and leave the consumer group mid-stream; not one tick is skipped.

A producer streams at a steady rate while consumer processes join, leave cleanly
(SIGTERM), or die (SIGKILL). Afterwards every produced tick must be in the BigQuery
dedup view exactly once and in GCS. A final consumer of the same group then finds
nothing left to read: if a commit had jumped past unwritten records (the bug of
issue 9), those records would be missing for good and no later run could find them.
"""

from __future__ import annotations

import signal
import time

from pipeline_lib.clients.kafka import ensure_topic
from tests.helpers import SteadyProducer, all_landed_once, finish, member, nothing_left


def prepared(settings):
    settings = settings.with_overrides(partitions=6)
    ensure_topic(settings, partitions=6)
    return settings


def test_a_member_joining_mid_stream_skips_nothing(settings):
    settings = prepared(settings)
    with SteadyProducer(settings, 4_000, rate=200, seed=61) as producer:
        first = member(settings)
        time.sleep(8)
        second = member(settings)
    reports = [finish(first), finish(second)]
    assert all(r["rebalances"] >= 1 for r in reports)
    all_landed_once(settings, producer.check())
    nothing_left(settings)


def test_a_member_leaving_cleanly_skips_nothing(settings):
    settings = prepared(settings)
    with SteadyProducer(settings, 4_000, rate=200, seed=62) as producer:
        stays = member(settings)
        leaves = member(settings, idle=60)
        time.sleep(9)
        leaves.send_signal(signal.SIGTERM)
        left = finish(leaves)
    finish(stays)
    assert left["stopped_because"] == "stop requested" and left["consumed"] > 0
    all_landed_once(settings, producer.check())
    nothing_left(settings)


def test_a_member_killed_mid_stream_skips_nothing(settings):
    settings = prepared(settings)
    with SteadyProducer(settings, 5_000, rate=200, seed=63) as producer:
        survivor = member(settings, idle=25)  # outlives the dead member's session timeout
        victim = member(settings, idle=60)
        time.sleep(10)
        victim.kill()
        victim.communicate(timeout=30)
    finish(survivor, timeout=180)
    all_landed_once(settings, producer.check())
    nothing_left(settings)


def test_three_members_join_one_by_one_and_leave_one_by_one(settings):
    settings = prepared(settings)
    with SteadyProducer(settings, 6_000, rate=200, seed=64) as producer:
        members = []
        for idle in (60, 60, 8):
            members.append(member(settings, idle=idle))
            time.sleep(5)
        for leaving in members[:2]:
            time.sleep(4)
            leaving.send_signal(signal.SIGTERM)
            finish(leaving)
    finish(members[2])  # the last one stays until caught up
    all_landed_once(settings, producer.check())
    nothing_left(settings)
