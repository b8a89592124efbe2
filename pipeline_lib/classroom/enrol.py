"""Students in and out of a class: logins, ACLs, their topics, dataset and bucket,
their handouts; a new password for one who lost theirs.

Everything runs as the cluster's admin: on a home made by ``up --secure``, its
``admin``; on a managed cluster, the credentials the settings give (which must be
allowed to manage SCRAM users and ACLs). Each step is an upsert, and a student enters
the class record only once all of theirs is made: a run cut short is run again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_lib.classroom import gcp
from pipeline_lib.classroom.handout import copy_ca, handout_settings, write_handout
from pipeline_lib.classroom.record import ClassRecord, load_record, new_password, save_record
from pipeline_lib.classroom.rights import principal_filter, student_acls
from pipeline_lib.classroom.roster import (
    FEED_TOPIC,
    Student,
    check_id,
    prefix,
    student_settings,
)
from pipeline_lib.clients.kafka import ensure_topic, kafka_admin
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError, PipelineError
from pipeline_lib.home.files import ADMIN, MECHANISM, recorded_secure

Notify = Callable[[str], None]


class ClassError(PipelineError):
    """Kafka refused a step of making or removing students; the message says which."""


def admin_settings(settings: Settings) -> Settings:
    """The settings the class is managed with: the local secure home's admin, or the
    managed cluster's credentials as given. ConfigError (what to run) without logins."""
    from pipeline_lib.local.secure import as_principal

    if settings.is_local:
        if not recorded_secure(settings.home):
            raise ConfigError(
                f"{settings.home} has no logins or ACLs: a class needs `python -m "
                "pipeline_lib up --secure` (or a managed cluster with admin credentials)"
            )
        return as_principal(settings, ADMIN)
    if not settings.kafka_sasl_mechanism:
        raise ConfigError(
            "a class on a managed cluster needs its admin's login: set "
            "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    return settings


def student_mechanism(settings: Settings) -> str:
    """How students log in: SCRAM, with the class's own SCRAM variant if it uses one."""
    mechanism = settings.kafka_sasl_mechanism or ""
    return mechanism if mechanism.startswith("SCRAM") and not settings.is_local else MECHANISM


def _scram(student_id: str, password: str | None, mechanism: str) -> Any:
    from kafka.admin import (
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    kind = ScramMechanism[mechanism.replace("-", "_")]
    if password is None:
        return UserScramCredentialDeletion(student_id, kind)
    return UserScramCredentialUpsertion(student_id, kind, password)


def _apply(admin_settings_: Settings, step: str, call: Callable[[Any], Any]) -> Any:
    """One admin call; a refusal or a dead broker as ClassError naming the step."""
    from kafka.errors import KafkaError

    admin = kafka_admin(admin_settings_)
    try:
        return call(admin)
    except KafkaError as error:
        raise ClassError(f"Kafka refused {step}: {error}") from None
    finally:
        admin.close()


def set_logins(admin: Settings, logins: dict[str, str | None], mechanism: str) -> None:
    """Upsert (password) or delete (None) the students' SCRAM logins, in one call."""
    if not logins:
        return
    changes = [_scram(user, password, mechanism) for user, password in logins.items()]
    answer = _apply(
        admin, "the students' logins", lambda a: a.alter_user_scram_credentials(changes)
    )
    refused = {user: message for user, message in (answer or {}).items() if message}
    deleting = {user for user, password in logins.items() if password is None}
    refused = {u: m for u, m in refused.items() if not (u in deleting and _gone(m))}
    if refused:
        user, message = next(iter(refused.items()))
        raise ClassError(
            f"Kafka refused the login of {user!r} ({message}); {len(refused)} refused in all. "
            "A managed cluster that makes its users elsewhere (Google's, Confluent Cloud) "
            "is set up by hand: see docs/classroom.md"
        )


def _gone(message: str) -> bool:
    """Kafka's answer to deleting a login that is not there (a second ``remove``)."""
    text = message.lower()
    return "does not exist" in text or "not found" in text


def grant(admin: Settings, student_ids: Iterable[str], feed: str) -> None:
    rules = [rule for student_id in student_ids for rule in student_acls(student_id, feed)]
    if not rules:
        return
    result = _apply(admin, "the students' ACLs", lambda a: a.create_acls(rules))
    failed = result.get("failed") or []
    if failed:
        raise ClassError(f"Kafka refused an ACL of the class: {failed[0]}")


@dataclass(frozen=True)
class Added:
    """What ``class add`` did: the students new to the class, those already in it,
    and where their handouts are."""

    new: list[str]
    kept: list[str]
    handouts: Path


def add_students(
    settings: Settings,
    students: Sequence[Student],
    out: Path,
    feed: str = FEED_TOPIC,
    notify: Notify | None = None,
) -> Added:
    """Put the roster's students into the class; those already in it keep their
    password and get their rights and handout again (unchanged)."""
    from pipeline_lib.ops.provision import provision

    say = notify or (lambda message: None)
    admin = admin_settings(settings)
    record = load_record(settings.home) or ClassRecord(feed)
    if record.feed != feed:
        raise ConfigError(f"this class's feed is {record.feed!r}, not {feed!r}")
    # Every name checked before anything is made: a roster that fails leaves no login.
    own = {s.id: student_settings(admin, s.id) for s in students}
    new = [s for s in students if s.id not in record.students]
    refuse_collisions(admin, [s.id for s in new], feed)
    passwords = {s.id: new_password() for s in new}
    mechanism = student_mechanism(settings)
    ensure_topic(admin, feed)
    set_logins(admin, dict(passwords), mechanism)
    grant(admin, [s.id for s in students], feed)
    for number, student in enumerate(new, start=1):
        provision(own[student.id], start_local=False)
        say(f"[{number}/{len(new)}] {student.id}: login, ACLs, topics, dataset, bucket")
    for student in students:  # a new or changed email gets its grants (real GCP only)
        gcp.grant_data_access(own[student.id], student)
    for student in new:
        record.students[student.id] = {"password": passwords[student.id], "email": student.email}
    cafile = copy_ca(settings.kafka_ssl_cafile or _home_ca(settings), out)
    for student in students:
        _write(settings, student.id, record.password(student.id), cafile, out, feed, mechanism)
    record.handouts = str(out.resolve())
    save_record(settings.home, record)
    kept = [s.id for s in students if s.id not in passwords]
    return Added([s.id for s in new], kept, out)


def refuse_collisions(admin: Settings, new_ids: Sequence[str], feed: str) -> None:
    """ConfigError (one line per id) for a new student whose prefix would cover a name
    that is not theirs: the feed, or a topic or group already on the cluster (the
    home's ``stock-ticks.dlq`` for a student ``stock-ticks``)."""
    if not new_ids:
        return

    def names(client: Any) -> list[str]:
        return [*client.list_topics(), *(g["group_id"] for g in client.list_groups())]

    taken = [feed, *_apply(admin, "listing topics and groups", names)]
    problems = []
    for student_id in new_ids:
        covered = sorted(n for n in taken if n.startswith(prefix(student_id)))
        if covered:
            problems.append(
                f"student id {student_id!r} would be given {', '.join(covered[:3])} "
                "(names already on the cluster start with it): choose another id"
            )
    if problems:
        raise ConfigError("\n".join(problems))


def _home_ca(settings: Settings) -> Path | None:
    from pipeline_lib.home.files import ca_file

    path = ca_file(settings.home)
    return path if settings.is_local and path.is_file() else None


def _write(
    settings: Settings,
    student_id: str,
    password: str,
    cafile: Path | None,
    out: Path,
    feed: str,
    mechanism: str,
) -> Path:
    own = student_settings(settings, student_id)
    return write_handout(out, handout_settings(own, student_id, password, cafile, mechanism), feed)


def rotate(settings: Settings, student_id: str, out: Path | None = None) -> Path:
    """A new password for one student; their handout written again, into ``out`` or
    where the class's handouts last went. Logins with the old password are refused
    from now on; a connection already open stays until it reconnects."""
    student_id = check_id(student_id)
    record = _existing(settings, [student_id])
    folder = out or Path(record.handouts or ".")
    cafile = copy_ca(settings.kafka_ssl_cafile or _home_ca(settings), folder)
    admin = admin_settings(settings)
    password, mechanism = new_password(), student_mechanism(settings)
    set_logins(admin, {student_id: password}, mechanism)
    record.students[student_id]["password"] = password
    record.handouts = str(folder.resolve())
    save_record(settings.home, record)
    return _write(settings, student_id, password, cafile, folder, record.feed, mechanism)


def remove(settings: Settings, student_ids: Sequence[str] | None, purge: bool) -> list[str]:
    """Take students (None: the whole class) out: their login and ACLs, their handout;
    with ``purge`` their topics, groups, dataset and bucket too. Safe to run again
    after a run cut short: what is already gone is not an error."""
    chosen = list(dict.fromkeys(check_id(s) for s in student_ids or []))
    record = _existing(settings, chosen)
    ids = chosen or sorted(record.students)
    admin = admin_settings(settings)
    set_logins(admin, dict.fromkeys(ids), student_mechanism(settings))
    results = _apply(
        admin, "removing ACLs", lambda a: a.delete_acls([principal_filter(s) for s in ids])
    )
    failed = [error for _, _, error in results or [] if getattr(error, "errno", 0)]
    if failed:
        raise ClassError(f"Kafka refused to remove a student's ACLs: {failed[0]}")
    for student_id in ids:
        if purge:
            purge_data(admin, student_id)
        if record.handouts:
            (Path(record.handouts) / f"{student_id}.env").unlink(missing_ok=True)
        record.students.pop(student_id, None)
        save_record(settings.home, record)  # each student out as soon as they are
    return ids


def no_class(settings: Settings) -> ConfigError:
    return ConfigError(f"{settings.home} has no class: `class add ROSTER.csv --out DIR` first")


def _existing(settings: Settings, ids: Sequence[str]) -> ClassRecord:
    record = load_record(settings.home)
    if record is None:
        raise no_class(settings)
    unknown = [s for s in ids if s not in record.students]
    if unknown:
        raise ConfigError(f"not in the class: {', '.join(unknown)}")
    return record


def purge_data(admin: Settings, student_id: str) -> None:
    """Delete the student's topics and consumer groups (by prefix), dataset and bucket."""
    from google.api_core.exceptions import NotFound

    from pipeline_lib.clients.google import bigquery_client, storage_client

    start = prefix(student_id)

    def topics_and_groups(client: Any) -> None:
        topics = [t for t in client.list_topics() if t.startswith(start)]
        if topics:
            client.delete_topics(topics)
        groups = [g["group_id"] for g in client.list_groups() if g["group_id"].startswith(start)]
        if groups:
            answer = client.delete_groups(groups)  # {group: error} (a list of pairs before)
            pairs = answer.items() if isinstance(answer, dict) else answer
            refused = [(g, e) for g, e in pairs if getattr(e, "errno", 0)]
            if refused:
                group, error = refused[0]
                raise ClassError(
                    f"Kafka kept {student_id}'s consumer group {group!r} "
                    f"({type(error).__name__}): a consumer of theirs may still run in it; "
                    "stop it, then run `class remove` again"
                )

    _apply(admin, f"deleting {student_id}'s topics and groups", topics_and_groups)
    own = student_settings(admin, student_id)
    bigquery_client(own).delete_dataset(own.bq_dataset, delete_contents=True, not_found_ok=True)
    if own.keeps_raw_objects:
        try:
            bucket = storage_client(own).get_bucket(own.gcs_bucket)
        except NotFound:
            return
        bucket.delete_blobs(list(bucket.list_blobs()))
        bucket.delete()
