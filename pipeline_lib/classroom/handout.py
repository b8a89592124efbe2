"""A student's handout: the ``.env`` file that makes every command, notebook and lab
of theirs use their login and their names.

It says every variable their work depends on, so nothing of the machine they run on
(another home, another ``.env``) changes where their ticks go. Services the class
shares are ``cloud`` to the student: theirs to use, not to start or stop (a local
emulator keeps its address).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline_lib.core.config import VARIABLES, Settings
from pipeline_lib.local.secure import write_private

# What a student's work depends on, in the order the configuration page lists them.
HANDOUT_VARIABLES = (
    "KAFKA_TARGET",
    "GCS_TARGET",
    "BIGQUERY_TARGET",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "PIPELINE_TOPIC",
    "PIPELINE_DLQ_TOPIC",
    "PIPELINE_NEWS_TOPIC",
    "PIPELINE_NEWS_DLQ_TOPIC",
    "PIPELINE_PARTITIONS",
    "PIPELINE_CONSUMER_GROUP",
    "GCP_PROJECT",
    "GCS_BUCKET",
    "BQ_DATASET",
    "BQ_LOCATION",
    "BQ_WRITE",
    "BQ_PARTITION_BY",
    "BQ_MAX_BYTES_BILLED",
    "STORAGE_EMULATOR_HOST",
    "BIGQUERY_EMULATOR_HOST",
    "BIGQUERY_EMULATOR_GRPC_PORT",
)


def ca_copy(out: Path) -> Path:
    return out / "ca.pem"


def shared(target: str) -> str:
    """A service as the student sees it: one they use and never start (``off`` stays)."""
    return "cloud" if target == "local" else target


def handout_settings(
    student: Settings, username: str, password: str, cafile: Path | None, mechanism: str
) -> Settings:
    """The student's settings (from :func:`~pipeline_lib.classroom.roster.student_settings`)
    as their handout gives them: their SASL login, the class's services shared."""
    protocol = student.kafka_security_protocol
    return student.with_overrides(
        kafka_target="cloud",
        kafka_security_protocol=protocol if protocol.startswith("SASL") else "SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        gcs_target=shared(student.gcs_target),
        bigquery_target=shared(student.bigquery_target),
        kafka_sasl_username=username,
        kafka_sasl_password=password,
        kafka_ssl_cafile=cafile,
    )


def handout_text(settings: Settings, feed: str) -> str:
    """The ``.env`` text of a student's settings (as :func:`handout_settings` makes them)."""
    user = settings.kafka_sasl_username
    lines = [
        f"# {user}'s handout (python -m pipeline_lib class add) for the class on "
        f"{settings.kafka_bootstrap_servers}",
        "# Private: it holds your password. Load it into the shell before any command",
        "# or JupyterLab:   set -a; . ./" + f"{user}.env; set +a",
        "# The teacher's live feed, in a group of your own:",
        f"#   PIPELINE_TOPIC={feed} PIPELINE_CONSUMER_GROUP={user}.feed "
        "python -m pipeline_lib consume",
        "",
    ]
    for name in HANDOUT_VARIABLES:
        variable = VARIABLES[name]
        text = variable.text(getattr(settings, variable.field))
        if text:
            lines.append(f"{name}={text}")
    return "\n".join(lines) + "\n"


def write_handout(out: Path, settings: Settings, feed: str) -> Path:
    """``out/<user>.env``, mode 0600."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{settings.kafka_sasl_username}.env"
    write_private(path, handout_text(settings, feed))
    return path


def copy_ca(cafile: Path | None, out: Path) -> Path | None:
    """The class's CA beside the handouts (a student's laptop has no teacher's home)."""
    if cafile is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    target = ca_copy(out)
    shutil.copyfile(cafile, target)
    return target.resolve()


def read_handout(path: Path) -> dict[str, str]:
    """The variables a handout sets (what ``set -a; . ./<id>.env`` exports)."""
    variables = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            variables[name.strip()] = value
    return variables
