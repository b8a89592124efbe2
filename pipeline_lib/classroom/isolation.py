"""Isolation shown, not assumed: one student tries another's topics and groups, and
the teacher's feed, on the real broker; each refusal is the pipeline's one line that
names the ACL missing.

Kafka is where a class shares a service that checks rights. The local GCS and
BigQuery emulators check none (docs/classroom.md says what real Google Cloud does).
"""

from __future__ import annotations

import uuid

import pandas as pd

from pipeline_lib.classroom.roster import prefix, student_settings
from pipeline_lib.core.config import Settings
from pipeline_lib.lessons.security import Attempt, try_describe, try_read, try_write


def neighbour_attempts(student: Settings, other_id: str, feed: str) -> list[Attempt]:
    """What ``student`` (their handout's settings) tries on ``other_id``'s work and on
    the feed: read, write and describe the other's topic, join the other's group
    (on a topic of the student's own), write the feed; and, to show the rights work,
    read the feed in a group of their own."""
    theirs = student_settings(student, other_id)
    run = uuid.uuid4().hex[:6]
    own_group = f"{prefix(student.kafka_sasl_username or '')}feed-{run}"
    return [
        try_read(student, theirs.topic, f"{student.consumer_group}-{run}"),
        try_write(student, theirs.topic),
        try_describe(student, theirs.topic),
        try_read(student, student.topic, f"{theirs.consumer_group}-{run}"),
        try_write(student, feed),
        try_read(student, feed, own_group),
    ]


def attempts_frame(attempts: list[Attempt]) -> pd.DataFrame:
    return pd.DataFrame([a.__dict__ for a in attempts])
