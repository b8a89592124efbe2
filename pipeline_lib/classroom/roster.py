"""The roster a teacher hands in, and the names a student's work goes under.

A student's id is the one name everything of theirs derives from: their Kafka login,
the prefix ``<id>.`` of their topics and consumer groups, their dataset
``<BQ_DATASET>_<id>`` and their bucket ``<GCS_BUCKET>-<id>``. Nothing about a student
but the password is stored: the names are a function of the id and the class's
settings.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.core.checks import check_bucket, check_name
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError

ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,28}[a-z0-9])?")
# Ids that would name a principal of the home, the feed's prefix, or the analyst's
# groups (which the pipeline principal is denied).
RESERVED = ("admin", "pipeline", "analyst", "class", "teacher")
FEED_TOPIC = "class.feed"
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Student:
    """One line of the roster: an id and, for real Google Cloud, a Google account."""

    id: str
    email: str | None = None


def check_id(raw: str) -> str:
    """A student id as the class uses it (lower case), or ConfigError in one line."""
    value = raw.strip().lower()
    if not ID_PATTERN.fullmatch(value):
        raise ConfigError(
            f"student id {raw!r}: use 1-30 letters, digits and '-', starting with a letter or digit"
        )
    if value in RESERVED or value.startswith("analyst"):
        raise ConfigError(
            f"student id {raw!r} is taken by the cluster ({', '.join(RESERVED)}, analyst*)"
        )
    return value


def read_roster(path: Path) -> list[Student]:
    """The students of a roster CSV (an ``id`` column, an optional ``email`` column).

    Every bad row is reported, one line each, in one ConfigError: a teacher fixes the
    file once, not once per error."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ConfigError(f"roster {path}: {error.strerror or error}") from None
    rows = csv.DictReader(text.splitlines())
    fields = [name.strip().lower() for name in rows.fieldnames or []]
    if "id" not in fields:
        raise ConfigError(f"roster {path}: no `id` column (the first line names the columns)")
    rows.fieldnames = fields
    students: dict[str, Student] = {}
    problems: list[str] = []
    for line, row in enumerate(rows, start=2):
        raw = (row.get("id") or "").strip()
        if not raw and not any((value or "").strip() for value in row.values()):
            continue  # a blank line
        email = (row.get("email") or "").strip() or None
        try:
            student_id = check_id(raw)
            if email is not None and not EMAIL_PATTERN.fullmatch(email):
                raise ConfigError(f"email {email!r} is not an address")
            if student_id in students:
                raise ConfigError(f"student id {student_id!r} is already on the roster")
        except ConfigError as error:
            problems.append(f"{path}:{line}: {error}")
            continue
        students[student_id] = Student(student_id, email)
    if problems:
        raise ConfigError("\n".join(problems))
    if not students:
        raise ConfigError(f"roster {path}: no students")
    return list(students.values())


def prefix(student_id: str) -> str:
    """The prefix of the student's topics and consumer groups: their ACLs' pattern."""
    return f"{student_id}."


def student_settings(settings: Settings, student_id: str) -> Settings:
    """``settings`` (the class's) with the names of one student's own: topics and a
    group under ``<id>.``, a dataset and a bucket named after them. Checked as the
    environment's names are."""
    underscored = student_id.replace("-", "_")
    dataset = check_name(f"{settings.bq_dataset}_{underscored}", "dataset")
    bucket = check_bucket(f"{settings.gcs_bucket}-{student_id}", "the student's bucket")
    start = prefix(student_id)
    return settings.with_overrides(
        topic=f"{start}ticks",
        dead_letter_topic=f"{start}ticks.dlq",
        news_topic=f"{start}news",
        news_dead_letter_topic=f"{start}news.dlq",
        consumer_group=f"{start}pipeline",
        bq_dataset=dataset,
        gcs_bucket=bucket,
    )
