"""Where the local home keeps what ``up`` recorded, and reading it back.

The layout file (``kafka-cluster.json``: the brokers formatted, whether secure) and
the secure folder (``kafka-secure/``: the CA, the broker's key, the generated
passwords). :mod:`pipeline_lib.local` writes them; :mod:`pipeline_lib.home.defaults`
turns them into default settings.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline_lib.core.config import PROJECT_ROOT
from pipeline_lib.core.secrets import register_secret

# Where `up` records the local cluster's shape, so later commands find every broker.
KAFKA_LAYOUT_FILE = "kafka-cluster.json"
SECURE_DIR = "kafka-secure"
MECHANISM = "SCRAM-SHA-512"  # how the pipeline and the analyst log in
ADMIN_MECHANISM = "PLAIN"  # how the admin (and the brokers) log in
ADMIN, PIPELINE, ANALYST = "admin", "pipeline", "analyst"
USERS = (ADMIN, PIPELINE, ANALYST)


def default_home() -> Path:
    """``./.pipeline`` when run from a checkout (editable install), else a user cache."""
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / ".pipeline"
    return Path.home() / ".cache" / "stock-pipeline"


def layout_file(home: Path) -> Path:
    return home / KAFKA_LAYOUT_FILE


def secure_dir(home: Path) -> Path:
    return home / SECURE_DIR


def ca_file(home: Path) -> Path:
    """The CA certificate a client trusts (KAFKA_SSL_CAFILE of a secure home)."""
    return secure_dir(home) / "ca.pem"


def users_file(home: Path) -> Path:
    """The generated passwords of the secure home's principals (mode 0600)."""
    return secure_dir(home) / "users.json"


def _layout(home: Path) -> dict:
    try:
        record = json.loads(layout_file(home).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_brokers(home: Path) -> int | None:
    """Brokers of the local cluster `up` last formatted in ``home``, if any."""
    try:
        return int(_layout(home)["brokers"])
    except (ValueError, KeyError, TypeError):
        return None


def recorded_secure(home: Path) -> bool:
    """True when ``up --secure`` made this home's Kafka (recorded beside its shape)."""
    return bool(_layout(home).get("secure"))


def local_password(home: Path, user: str) -> str | None:
    """The generated password of a principal of the home's secure Kafka, if any."""
    try:
        users = json.loads(users_file(home).read_text())
    except (OSError, ValueError):
        return None
    value = users.get(user) if isinstance(users, dict) else None
    if not isinstance(value, str):
        return None
    register_secret(value)  # masked in any message from now on
    return value


def is_secure_home(home: Path) -> bool:
    """A home made by `up --secure` whose passwords are still there (a damaged one
    reads as plaintext, so every command, `up --secure` and `down --purge` included,
    still runs)."""
    return recorded_secure(home) and local_password(home, ADMIN) is not None
