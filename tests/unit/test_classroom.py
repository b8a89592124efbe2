"""A class without a broker: the roster's checks, a student's names and rights, the
handout, the class record, the board's verdicts."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime

import pytest

from pipeline_lib.classroom import board, handout, record, rights, roster
from pipeline_lib.classroom.enrol import admin_settings
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.core.secrets import mask


def write(tmp_path, text: str):
    path = tmp_path / "roster.csv"
    path.write_text(text)
    return path


def test_a_roster_gives_one_student_per_line_lower_cased_blank_lines_skipped(tmp_path):
    path = write(tmp_path, "\ufeffID,Email,name\nS01,a@example.org,Ann\n\ns-02,,Bo\n")
    assert roster.read_roster(path) == [
        roster.Student("s01", "a@example.org"),
        roster.Student("s-02", None),
    ]


def test_every_bad_row_of_a_roster_is_one_line_naming_its_line(tmp_path):
    path = write(
        tmp_path,
        "id,email\nx y,\nadmin,\nanalyst7,\ns1,not-an-address\ns2,\nS2,\n"
        "x'; DROP TABLE t;--,\n" + "a" * 31 + ",\n",
    )
    with pytest.raises(ConfigError) as raised:
        roster.read_roster(path)
    lines = str(raised.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["2", "3", "4", "5", "7", "8", "9"]
    assert "reserved" in lines[1] or "taken" in lines[1]
    assert "already on the roster" in lines[4]


@pytest.mark.parametrize(
    "text, said", [("name\nann\n", "no `id` column"), ("id\n\n", "no students")]
)
def test_a_roster_without_ids_or_students_is_refused(tmp_path, text, said):
    with pytest.raises(ConfigError, match=said):
        roster.read_roster(write(tmp_path, text))


def test_a_students_names_all_derive_from_the_id():
    own = roster.student_settings(Settings.from_env({}), "s-07")
    assert own.topic == "s-07.ticks" and own.dead_letter_topic == "s-07.ticks.dlq"
    assert own.news_topic == "s-07.news" and own.news_dead_letter_topic == "s-07.news.dlq"
    assert own.consumer_group.startswith(roster.prefix("s-07"))
    assert own.bq_dataset == "market_data_s_07"
    assert own.gcs_bucket == "stock-ticks-raw-s-07"


def test_a_students_rules_name_only_their_prefix_and_read_the_feed():
    from kafka.admin import ACLOperation, ACLPermissionType, ACLResourcePatternType

    rules = rights.student_acls("s07", "class.feed")
    assert {r.principal for r in rules} == {"User:s07"}
    assert {r.permission_type for r in rules} == {ACLPermissionType.ALLOW}
    own = [r for r in rules if r.resource_pattern.resource_name == "s07."]
    assert {r.resource_pattern.pattern_type for r in own} == {ACLResourcePatternType.PREFIXED}
    feed = [r for r in rules if r.resource_pattern.resource_name == "class.feed"]
    assert {r.operation for r in feed} == {ACLOperation.READ, ACLOperation.DESCRIBE}
    assert {r.resource_pattern.pattern_type for r in feed} == {ACLResourcePatternType.LITERAL}
    assert len(own) + len(feed) == len(rules)  # nothing else: no ALL, no cluster right
    assert ACLOperation.ALTER_CONFIGS not in {r.operation for r in rules}


def test_one_students_prefix_never_covers_anothers():
    ids = ["s1", "s1-2", "s10", "s"]
    for a in ids:
        for b in ids:
            if a != b:
                assert not roster.student_settings(Settings.from_env({}), b).topic.startswith(
                    roster.prefix(a)
                )


def test_a_handout_makes_the_shared_services_the_students_and_is_private(tmp_path):
    ca = tmp_path / "home-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cafile = handout.copy_ca(ca, tmp_path / "out")
    own = roster.student_settings(Settings.from_env({}), "s07")
    given = handout.handout_settings(own, "s07", "pa55word-s07", cafile, "SCRAM-SHA-512")
    path = handout.write_handout(tmp_path / "out", given, "class.feed")
    assert path.name == "s07.env" and stat.S_IMODE(path.stat().st_mode) == 0o600
    variables = handout.read_handout(path)
    assert variables["KAFKA_TARGET"] == "cloud"  # the class's broker: used, never started
    assert variables["GCS_TARGET"] == variables["BIGQUERY_TARGET"] == "cloud"
    assert variables["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1")  # kept
    assert variables["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert variables["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert variables["KAFKA_SASL_USERNAME"] == "s07"
    assert variables["KAFKA_SASL_PASSWORD"] == "pa55word-s07"
    assert variables["KAFKA_SSL_CAFILE"] == str(cafile)
    assert variables["PIPELINE_TOPIC"] == "s07.ticks"
    assert variables["BQ_DATASET"] == "market_data_s07"
    # the handout alone gives the student's settings, on any home
    loaded = Settings.from_env(variables)
    assert loaded.topic == "s07.ticks" and not loaded.is_local
    assert loaded.kafka_sasl_username == "s07"


def test_the_class_record_is_private_and_its_passwords_masked(tmp_path):
    kept = record.ClassRecord("class.feed", str(tmp_path), {"s07": {"password": "Secr3t-s07x"}})
    record.save_record(tmp_path, kept)
    path = record.class_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert record.load_record(tmp_path) == kept
    assert "Secr3t-s07x" not in mask("password Secr3t-s07x")
    assert record.load_record(tmp_path / "elsewhere") is None


def test_a_class_needs_a_home_with_logins(tmp_path):
    settings = Settings.from_env({"PIPELINE_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="up --secure"):
        admin_settings(settings)
    cloud = Settings.from_env(
        {"PIPELINE_TARGET": "cloud", "KAFKA_BOOTSTRAP_SERVERS": "kafka.example.org:9092"}
    )
    with pytest.raises(ConfigError, match="KAFKA_SASL_USERNAME"):
        admin_settings(cloud)


@pytest.mark.parametrize(
    "fields, state",
    [
        ({}, "not started"),
        ({"produced": 10}, "nothing landed"),
        ({"produced": 10, "landed_rows": 5, "lag": 5}, "consumer stopped"),
        ({"produced": 10, "landed_rows": 5, "lag": 5, "consumers": 1}, "landing"),
        ({"produced": 10, "landed_rows": 10, "dead_letters": 2}, "dead letters"),
        ({"produced": 10, "landed_rows": 10}, "idle"),
        ({"produced": 10, "problem": "Kafka: away"}, "error"),
    ],
)
def test_the_board_says_in_a_word_where_a_student_is(fields, state):
    assert board.verdict(board.StudentRow("s07", **fields)) == state


def test_the_boards_json_has_no_nan_and_says_times_in_iso():
    rows = [
        board.StudentRow("s01", "idle", 1, 10, 0, 0, 10, 2, datetime(2026, 1, 1, tzinfo=UTC)),
        board.StudentRow("s02", "not started"),
    ]
    document = board.status_json(rows)
    text = json.dumps(document, allow_nan=False)
    assert [d["student"] for d in document] == ["s01", "s02"]
    assert document[0]["last_activity"] == "2026-01-01T00:00:00+00:00"
    assert document[0]["connected"] is True and document[1]["idle_s"] is None
    assert "NaN" not in text


class FakeDataset:
    def __init__(self):
        self.access_entries = []


class FakeBigQuery:
    def __init__(self):
        self.dataset, self.updates = FakeDataset(), []

    def get_dataset(self, name):
        self.asked = name
        return self.dataset

    def update_dataset(self, dataset, fields):
        self.updates.append(fields)


class FakePolicy:
    def __init__(self):
        self.bindings = [{"role": "roles/storage.legacyBucketOwner", "members": {"projectOwner:p"}}]


class FakeBucket:
    def __init__(self):
        self.policy, self.saved = FakePolicy(), 0

    def get_iam_policy(self, requested_policy_version):
        return self.policy

    def set_iam_policy(self, policy):
        self.saved += 1


class FakeStorage:
    def __init__(self):
        self.the_bucket = FakeBucket()

    def bucket(self, name):
        self.asked = name
        return self.the_bucket


def test_on_real_google_cloud_a_student_gets_their_dataset_and_bucket_once(monkeypatch):
    from pipeline_lib.classroom import gcp
    from pipeline_lib.clients import google

    bigquery, storage = FakeBigQuery(), FakeStorage()
    monkeypatch.setattr(google, "bigquery_client", lambda settings: bigquery)
    monkeypatch.setattr(google, "storage_client", lambda settings: storage)
    cloud = Settings.from_env(
        {"PIPELINE_TARGET": "cloud", "KAFKA_BOOTSTRAP_SERVERS": "k.example.org:9092",
         "GCP_PROJECT": "my-class"}
    )  # fmt: skip
    own = roster.student_settings(cloud, "s07")
    student = roster.Student("s07", "s07@example.edu")
    for _ in range(2):  # a second run adds nothing
        granted = gcp.grant_data_access(own, student)
    assert bigquery.asked == "my-class.market_data_s07" and storage.asked == "stock-ticks-raw-s07"
    (entry,) = bigquery.dataset.access_entries
    assert (entry.role, entry.entity_type, entry.entity_id) == (
        "WRITER",
        "userByEmail",
        "s07@example.edu",
    )
    assert bigquery.updates == [["access_entries"]]
    binding = next(b for b in storage.the_bucket.policy.bindings if b["role"] == gcp.BUCKET_ROLE)
    assert binding["members"] == {"user:s07@example.edu"} and storage.the_bucket.saved == 1
    assert "already" in granted[1]


def test_on_the_emulators_or_without_an_email_nothing_is_granted():
    from pipeline_lib.classroom import gcp

    local = roster.student_settings(Settings.from_env({}), "s07")
    assert gcp.grant_data_access(local, roster.Student("s07", "s07@example.edu")) == []
    assert gcp.grant_data_access(local, roster.Student("s07")) == []


@pytest.mark.parametrize("raw", ["ana-", "-ana", "a" * 31])
def test_an_id_must_start_and_end_with_a_letter_or_digit(raw):
    with pytest.raises(ConfigError):
        roster.check_id(raw)


def test_the_class_record_never_shows_a_password_in_its_repr():
    kept = record.ClassRecord("class.feed", None, {"s07": {"password": "Secr3t-s07y"}})
    assert "Secr3t-s07y" not in repr(kept)
