"""The class as the teacher's home records it: each student's password (which no one
can read back from Kafka), the feed topic and where the handouts go.

One private file (mode 0600) beside the home's own passwords. Everything else about
a student (login name, topics, dataset, bucket) is derived from the id.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_lib.core.errors import ConfigError
from pipeline_lib.core.secrets import register_secret
from pipeline_lib.home.files import secure_dir
from pipeline_lib.local.secure import write_private

CLASS_FILE = "class.json"


def class_file(home: Path) -> Path:
    return secure_dir(home) / CLASS_FILE


def new_password() -> str:
    """A generated password, masked in every later message."""
    password = secrets.token_urlsafe(18)
    register_secret(password)
    return password


@dataclass
class ClassRecord:
    """The students (id -> password, email) and the class's feed and handout folder."""

    feed: str
    handouts: str | None = None
    students: dict[str, dict[str, str | None]] = field(default_factory=dict, repr=False)

    def password(self, student_id: str) -> str:
        value = self.students[student_id]["password"]
        assert isinstance(value, str)
        return value


def load_record(home: Path) -> ClassRecord | None:
    """The home's class, or None before the first ``class add``."""
    path = class_file(home)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} cannot be read ({error}): restore it or remove it") from None
    record = ClassRecord(data["feed"], data.get("handouts"), data.get("students") or {})
    for student in record.students.values():
        register_secret(student.get("password"))
    return record


def save_record(home: Path, record: ClassRecord) -> None:
    """Written whole, to a new file renamed over the old: a crash leaves one or the other."""
    path = class_file(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".json.partial")
    data = {"feed": record.feed, "handouts": record.handouts, "students": record.students}
    write_private(partial, json.dumps(data, indent=1, sort_keys=True) + "\n")
    partial.replace(path)
