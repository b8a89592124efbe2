"""The instructor's board: per student, what their work has reached, in one table.

Read as the class's admin through the official clients, once per refresh and for the
whole class at once (one topic listing, one offsets request per kind, one group
listing), then per student one dataset listing, a read of each table's metadata and
one bucket listing. A refresh of a class of thirty takes a moment: the live control
runs on the kernel's loop and the notebook waits for it. Each student's row is best
effort: what could not be read is named in ``problem``, and the other rows stand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from pipeline_lib.analysis.live import LiveControl
from pipeline_lib.classroom.enrol import admin_settings, no_class
from pipeline_lib.classroom.record import load_record
from pipeline_lib.classroom.roster import prefix, student_settings
from pipeline_lib.clients.kafka import kafka_admin
from pipeline_lib.core.config import Settings
from pipeline_lib.core.secrets import mask

DEAD_LETTER_SUFFIX = ".dlq"


@dataclass
class StudentRow:
    """One student on the board. ``produced`` counts messages in their topics (dead
    letters apart); ``lag`` what their groups have not committed; ``landed_rows`` the
    rows of their dataset's tables; ``objects`` their bucket's objects."""

    student: str
    state: str = ""
    consumers: int = 0
    produced: int = 0
    dead_letters: int = 0
    lag: int = 0
    landed_rows: int = 0
    objects: int = 0
    last_activity: datetime | None = None
    problem: str = ""

    @property
    def connected(self) -> bool:
        """A consumer of theirs is in a group now (a producer leaves no trace to ask)."""
        return self.consumers > 0


def verdict(row: StudentRow) -> str:
    """One word on where the student is: what a teacher walks over for."""
    if row.problem:
        return "error"
    if row.produced == 0 and row.landed_rows == 0:
        return "not started"
    if row.landed_rows == 0:
        return "nothing landed"
    if row.lag > 0 and not row.connected:
        return "consumer stopped"
    if row.dead_letters:
        return "dead letters"
    return "landing" if row.connected else "idle"


def _ms(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp / 1000, UTC) if timestamp and timestamp > 0 else None


def _latest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def kafka_rows(admin: Settings, students: list[str]) -> dict[str, StudentRow]:
    """Topics, offsets, groups and lag of every student, in a handful of admin calls."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    rows = {s: StudentRow(s) for s in students}
    owner = {prefix(s): s for s in students}

    def whose(name: str) -> str | None:
        head, dot, _ = name.partition(".")
        return owner.get(head + dot) if dot else None

    client = kafka_admin(admin)
    try:
        topics = [t for t in client.list_topics() if whose(t)]
        partitions = [
            TopicPartition(t["name"], p["partition_index"])
            for t in (client.describe_topics(topics) if topics else [])
            for p in t.get("partitions", [])
        ]
        ends, newest = {}, {}
        if partitions:
            ends = client.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.LATEST))
            newest = client.list_partition_offsets(
                dict.fromkeys(partitions, OffsetSpec.MAX_TIMESTAMP)
            )
        groups = [g["group_id"] for g in client.list_groups() if whose(g["group_id"])]
        described = client.describe_groups(groups) if groups else {}
        committed = client.list_group_offsets(dict.fromkeys(groups)) if groups else {}
    finally:
        client.close()
    for tp in partitions:
        row = rows[whose(tp.topic)]  # type: ignore[index]
        end = ends[tp].offset
        if tp.topic.endswith(DEAD_LETTER_SUFFIX):
            row.dead_letters += end
        else:
            row.produced += end
        row.last_activity = _latest(row.last_activity, _ms(newest[tp].timestamp))
    for group in groups:
        row = rows[whose(group)]  # type: ignore[index]
        members = _members(described, group)
        row.consumers += members
        for tp, offset in _offsets(committed, group).items():
            if tp in ends and offset is not None and offset >= 0:
                row.lag += max(0, ends[tp].offset - offset)
    return rows


def _members(described: Any, group: str) -> int:
    info = described.get(group) if isinstance(described, dict) else None
    return len((info or {}).get("members") or [])


def _offsets(committed: Any, group: str) -> dict[Any, int | None]:
    offsets = committed.get(group) if isinstance(committed, dict) else None
    return {tp: getattr(o, "offset", o) for tp, o in (offsets or {}).items()}


def data_counts(settings: Settings, row: StudentRow) -> None:
    """Rows in the student's tables and objects in their bucket, and when each last
    changed (views and run summaries are not counted)."""
    from google.api_core.exceptions import NotFound

    from pipeline_lib.clients.google import bigquery_client, storage_client

    client = bigquery_client(settings)
    try:
        listed = list(client.list_tables(settings.bq_dataset))
    except NotFound:
        listed = []
    for item in listed:
        if item.table_type != "TABLE" or item.table_id.endswith("_runs"):
            continue
        table = client.get_table(item.reference)
        if table.num_rows:  # a table made by `class add` and empty is no activity
            row.landed_rows += int(table.num_rows)
            row.last_activity = _latest(row.last_activity, table.modified)
    if not settings.keeps_raw_objects:
        return
    try:
        blobs = list(storage_client(settings).list_blobs(settings.gcs_bucket))
    except NotFound:
        return
    row.objects = len(blobs)
    row.last_activity = _latest(row.last_activity, *(b.updated for b in blobs))


def class_status(settings: Settings) -> list[StudentRow]:
    """Every student of the home's class, as the board shows them."""
    record = load_record(settings.home)
    if record is None:
        raise no_class(settings)
    admin = admin_settings(settings)
    students = sorted(record.students)
    try:
        rows = kafka_rows(admin, students)
    except Exception as error:  # Kafka away: the board says so on every row
        rows = {s: StudentRow(s, problem=mask(f"Kafka: {error}")) for s in students}
    for student in students:
        row = rows[student]
        try:
            data_counts(student_settings(admin, student), row)
        except Exception as error:
            row.problem = row.problem or mask(f"{type(error).__name__}: {error}")
        row.state = verdict(row)
    return [rows[s] for s in students]


def status_frame(rows: list[StudentRow]) -> pd.DataFrame:
    """The board as a table, one row per student; idle time in seconds."""
    now = datetime.now(UTC)
    records = []
    for row in rows:
        data = asdict(row)
        data["connected"] = row.connected
        data["idle_s"] = (
            round((now - row.last_activity).total_seconds()) if row.last_activity else None
        )
        records.append(data)
    columns = [
        "student", "state", "connected", "consumers", "produced", "landed_rows", "objects",
        "lag", "dead_letters", "last_activity", "idle_s", "problem",
    ]  # fmt: skip
    return pd.DataFrame(records, columns=columns).set_index("student")


def status_json(rows: list[StudentRow]) -> list[dict[str, Any]]:
    """The board for scripts (``class status --json``)."""
    frame = status_frame(rows).reset_index()
    frame["last_activity"] = [
        t.isoformat() if isinstance(t, datetime) else None for t in frame["last_activity"]
    ]
    return [
        {key: (None if pd.isna(value) else value) for key, value in record.items()}
        for record in frame.astype(object).to_dict("records")
    ]


# What each state asks of the teacher, in the board's colours (light, for both themes).
STATE_COLOURS = {
    "error": "#f8b4b4",
    "not started": "#fde68a",
    "nothing landed": "#fde68a",
    "consumer stopped": "#fdba74",
    "dead letters": "#fdba74",
    "landing": "#bbf7d0",
    "idle": "#e5e7eb",
}


def styled(frame: pd.DataFrame) -> Any:
    """The board as a pandas Styler: each state coloured, times short, no NaN shown."""
    shown = frame.copy()
    shown["last_activity"] = [
        t.strftime("%H:%M:%S UTC") if isinstance(t, datetime) and not pd.isna(t) else "-"
        for t in shown["last_activity"]
    ]
    return (
        shown.style.map(
            lambda state: f"background-color: {STATE_COLOURS.get(state, 'white')}",
            subset=["state"],
        )
        .format(na_rep="-", precision=0)
        .set_caption(f"{len(shown)} students, read {datetime.now(UTC):%H:%M:%S} UTC")
    )


class ClassBoard(LiveControl):
    """The instructor's live board in JupyterLab: the table of :func:`class_status`,
    read again every ``refresh_s`` while *live* is on."""

    def __init__(self, settings: Settings, refresh_s: float = 5.0) -> None:
        import ipywidgets as widgets

        self.settings = settings
        refresh, running = self._controls(refresh_s)
        self.table = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([refresh, running]), self.table, self.status])

    def redraw(self) -> None:
        rows = class_status(self.settings)
        self.table.value = styled(status_frame(rows)).to_html()
        stuck = [r.student for r in rows if r.state not in {"landing", "idle"}]
        self.status.value = f"{len(stuck)} of {len(rows)} need a look: {', '.join(stuck) or '-'}"
