"""A class of eight on the broker in secure mode: each student's handout used to
produce and consume their own ticks, each dataset holding exactly its own; a
student refused another's topic and group and the teacher's feed, in one line
naming the ACL; the board's counts; a new password; a student removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from pipeline_lib.classroom import enrol
from pipeline_lib.classroom.handout import read_handout
from pipeline_lib.classroom.isolation import neighbour_attempts
from pipeline_lib.classroom.record import load_record
from pipeline_lib.classroom.roster import FEED_TOPIC, Student, read_roster, student_settings
from pipeline_lib.clients.google import bigquery_client
from pipeline_lib.clients.kafka import ConnectionFailed, ensure_topic, kafka_admin
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.home import load_settings
from pipeline_lib.kafka_io.consume import consume
from pipeline_lib.kafka_io.producer import produce
from pipeline_lib.labs.facts import table_ids
from tests.helpers import simulated

TICKS_EACH = 40


def roster(path, ids):
    path.write_text("id\n" + "\n".join(ids) + "\n")
    return path


def command(teacher, *argv: str) -> str:
    """``python -m pipeline_lib ...`` as the teacher runs it, in the teacher's environment;
    its standard output (its exit code must be 0)."""
    env = {**os.environ, **teacher.to_env()}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_lib", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert teacher.kafka_sasl_password not in done.stdout + done.stderr
    return done.stdout


def handout_settings(handouts, student_id, home):
    """What a student's shell has after `set -a; . ./<id>.env`: nothing but the handout
    (and a home of their own, which adds nothing to a cloud target)."""
    env = {**read_handout(handouts / f"{student_id}.env"), "PIPELINE_HOME": str(home)}
    return load_settings(env)


@pytest.fixture(scope="module")
def klass(secure_kafka, tmp_path_factory):
    """Eight students (ids of this run's own) added from a roster, as the teacher would."""
    folder = tmp_path_factory.mktemp("class")
    token = uuid.uuid4().hex[:6]
    ids = [f"s{n}-{token}" for n in range(1, 9)]
    handouts = folder / "handouts"
    listed = roster(folder / "roster.csv", ids)
    added = command(secure_kafka, "class", "add", str(listed), "--out", str(handouts))
    assert f"{len(ids)} student(s) added, 0 already in the class" in added
    yield secure_kafka, ids, handouts, folder
    known = load_record(secure_kafka.home).students
    enrol.remove(secure_kafka, [s for s in ids if s in known], purge=True)


def test_each_students_ticks_land_once_in_their_own_dataset_and_nowhere_else(klass, tmp_path):
    teacher, ids, handouts, _ = klass
    landed = {}
    for number, student_id in enumerate(ids):
        student = handout_settings(handouts, student_id, tmp_path / student_id)
        assert student.kafka_sasl_username == student_id and not student.is_local
        report = produce(student, simulated(TICKS_EACH, seed=500 + number))
        assert report.delivered == TICKS_EACH
        consume(student, until_idle=2, duration=90)
        landed[student_id] = table_ids(student)
    for number, student_id in enumerate(ids):
        expected = {t.event_id for t in simulated(TICKS_EACH, seed=500 + number)}
        assert landed[student_id] == dict.fromkeys(expected, 1)  # each once, all theirs
    everyone = [i for counts in landed.values() for i in counts]
    assert len(everyone) == len(set(everyone)) == TICKS_EACH * len(ids)

    document = json.loads(command(teacher, "class", "status", "--json"))
    board = {row["student"]: row for row in document}
    for student_id in ids:
        row = board[student_id]
        assert row["produced"] == TICKS_EACH and row["landed_rows"] == TICKS_EACH
        assert row["dead_letters"] == 0 and row["lag"] == 0 and row["objects"] >= 1
        assert row["state"] == "idle" and row["last_activity"]


def test_a_student_is_refused_anothers_topic_and_group_and_the_feed_in_one_line(klass, tmp_path):
    _, ids, handouts, _ = klass
    student = handout_settings(handouts, ids[0], tmp_path)
    attempts = neighbour_attempts(student, ids[1], FEED_TOPIC)
    *refused, feed_read = attempts
    for attempt in refused:
        assert not attempt.allowed, attempt
        assert "\n" not in attempt.answer
        assert "the ACL missing is ALLOW" in attempt.answer and f"User:{ids[0]}" in attempt.answer
    me, other = f"Kafka refused User:{ids[0]}", f"{ids[1]}."
    expected = [
        f"{me} READ on topic '{other}ticks'",
        f"{me} WRITE on topic '{other}ticks'",
        f"{me} DESCRIBE on topic '{other}ticks'",
        f"{me} the consumer group '{other}pipeline-",
        f"{me} WRITE on topic '{FEED_TOPIC}'",
    ]
    assert len(refused) == len(expected)
    for attempt, start in zip(refused, expected, strict=True):
        assert attempt.answer.startswith(start), attempt.answer
    assert feed_read.allowed, feed_read  # the feed: read in a group of their own
    assert student.kafka_sasl_password not in json.dumps([a.__dict__ for a in attempts])


def test_adding_a_longer_roster_adds_only_the_new_student(klass):
    teacher, ids, handouts, folder = klass
    before = {s: (handouts / f"{s}.env").read_text() for s in ids}
    late = ids[0].replace("s1-", "s9-")
    added = enrol.add_students(
        teacher, read_roster(roster(folder / "r2.csv", [*ids, late])), handouts
    )
    assert added.new == [late] and added.kept == ids
    assert {s: (handouts / f"{s}.env").read_text() for s in ids} == before  # same passwords
    ids.append(late)  # removed with the others at the end


def test_a_new_password_locks_the_old_one_out(klass, tmp_path):
    teacher, ids, handouts, _ = klass
    old = handout_settings(handouts, ids[2], tmp_path)
    kafka_admin(old, timeout_s=5).close()
    enrol.rotate(teacher, ids[2])
    with pytest.raises(ConnectionFailed) as refused:
        kafka_admin(old, timeout_s=3).close()
    assert old.kafka_sasl_password not in str(refused.value)
    kafka_admin(handout_settings(handouts, ids[2], tmp_path), timeout_s=5).close()


def test_a_removed_student_loses_login_topics_dataset_and_handout(klass, tmp_path):
    teacher, ids, handouts, _ = klass
    gone = ids.pop(3)
    student = handout_settings(handouts, gone, tmp_path)
    admin_settings = enrol.admin_settings(teacher)
    # a run cut short had already deleted the login: removing again is no error
    enrol.set_logins(admin_settings, {gone: None}, enrol.student_mechanism(teacher))
    assert enrol.remove(teacher, [gone, gone], purge=True) == [gone]
    assert not (handouts / f"{gone}.env").exists()
    with pytest.raises(ConnectionFailed):
        kafka_admin(student, timeout_s=3).close()
    admin = kafka_admin(enrol.admin_settings(teacher))
    try:
        assert not [t for t in admin.list_topics() if t.startswith(f"{gone}.")]
    finally:
        admin.close()
    own = student_settings(teacher, gone)
    assert not [d for d in bigquery_client(own).list_datasets() if d.dataset_id == own.bq_dataset]
    assert gone not in load_record(teacher.home).students


def test_an_id_whose_prefix_covers_names_on_the_cluster_is_refused_before_any_login(klass):
    teacher, _, handouts, _ = klass
    taken = f"zz{uuid.uuid4().hex[:6]}"
    admin_settings = enrol.admin_settings(teacher)
    ensure_topic(admin_settings, f"{taken}.someone-elses", partitions=1)
    with pytest.raises(ConfigError, match=f"{taken}.someone-elses"):
        enrol.add_students(teacher, [Student(taken)], handouts)
    admin = kafka_admin(admin_settings)
    try:
        described = admin.describe_user_scram_credentials([taken])
        assert described[taken]["error"]  # no login was made
        admin.delete_topics([f"{taken}.someone-elses"])
    finally:
        admin.close()
    assert taken not in load_record(teacher.home).students
