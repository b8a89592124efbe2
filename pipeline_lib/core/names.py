"""Names of its own for one run: a test, a notebook run, a drill or lesson, a bench figure.

:func:`run_names` is the one spelling of "fresh names for this run": each call draws a
new token, so two runs (two tests, two rounds of a figure) never share a topic, a
consumer group, a bucket or a dataset, and every name it gives is checked by
:mod:`pipeline_lib.core.checks` as the environment's would be.
"""

from __future__ import annotations

import re
import uuid

from pipeline_lib.core.checks import (
    UnsafeIdentifier,
    check_bucket,
    check_group,
    check_name,
    check_topic,
)
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError

# A label names the kind of run (``test``, ``nb``, ``bench-e2e``, ``crash-drill``): it
# goes into topic, group and bucket names as it is and, with ``_`` for ``-``, into
# dataset and table names, so it is held to what all of them accept.
LABEL_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,39}")
TOKEN_LENGTH = 8


def run_token() -> str:
    """A new token of :data:`TOKEN_LENGTH` hex digits (unique per call in practice)."""
    return uuid.uuid4().hex[:TOKEN_LENGTH]


def run_names(settings: Settings, label: str, *, within: bool = False) -> Settings:
    """``settings`` with names of one run's own. With ``stem = <label>-<token>`` (a new
    token each call):

    ==========================  ==========================  ===============================
    field                       a run of its own (default)  ``within=True``
    ==========================  ==========================  ===============================
    ``topic``                   ``<stem>-ticks``            ``<topic>-<stem>``
    ``dead_letter_topic``       ``<stem>-ticks.dlq``        ``<topic>-<stem>.dlq``
    ``news_topic``              ``<stem>-news``             ``<news_topic>-<stem>``
    ``news_dead_letter_topic``  ``<stem>-news.dlq``         ``<news_topic>-<stem>.dlq``
    ``consumer_group``          ``<stem>-group``            ``<consumer_group>-<stem>``
    ``gcs_bucket``              ``<stem>-raw``              kept
    ``bq_dataset``              ``<stem>`` (``_`` for -)    kept
    ``bq_table``                kept                        ``<bq_table>_<label>``
    ``bq_news_table``           kept                        ``<bq_news_table>_<label>``
    ==========================  ==========================  ===============================

    A run of its own (a test, a notebook run, a bench figure) has a bucket and a
    dataset of its own. A run ``within`` the settings (a drill or lesson run from a
    notebook) lands in the user's bucket and dataset, in tables named after the label
    alone: the same tables each time, which the drill makes anew.

    Every other field is kept. A name that would not be valid (a label of other than
    a-z 0-9 _ -, or a name grown too long) raises :class:`ConfigError`."""
    if not LABEL_PATTERN.fullmatch(label):
        raise ConfigError(f"run label {label!r}: use 1-40 of a-z 0-9 _ -, starting with a letter")
    stem = f"{label}-{run_token()}"
    if within:
        suffix = "_" + label.replace("-", "_")
        names = {
            "topic": f"{settings.topic}-{stem}",
            "dead_letter_topic": f"{settings.topic}-{stem}.dlq",
            "news_topic": f"{settings.news_topic}-{stem}",
            "news_dead_letter_topic": f"{settings.news_topic}-{stem}.dlq",
            "consumer_group": f"{settings.consumer_group}-{stem}",
            "bq_table": f"{settings.bq_table}{suffix}",
            "bq_news_table": f"{settings.bq_news_table}{suffix}",
        }
    else:
        names = {
            "topic": f"{stem}-ticks",
            "dead_letter_topic": f"{stem}-ticks.dlq",
            "news_topic": f"{stem}-news",
            "news_dead_letter_topic": f"{stem}-news.dlq",
            "consumer_group": f"{stem}-group",
            "gcs_bucket": f"{stem}-raw",
            "bq_dataset": stem.replace("-", "_"),
        }
    _check(names, label)
    return settings.with_overrides(**names)


def _check(names: dict[str, str], label: str) -> None:
    """Each name valid for what it names; the four topics distinct, and the two tables
    distinct from each other and from each other's view (``<table>_dedup``)."""
    where = f"run names for {label!r}"
    for field, name in names.items():
        if field.endswith("topic"):
            check_topic(name, f"{where}: {field}")
        elif field == "consumer_group":
            check_group(name, f"{where}: {field}")
        elif field == "gcs_bucket":
            check_bucket(name, f"{where}: {field}")
        else:
            try:
                check_name(name, "dataset" if field == "bq_dataset" else "table")
            except UnsafeIdentifier as error:
                raise ConfigError(f"{where}: {error}") from None
    topics = [v for k, v in names.items() if k.endswith("topic")]
    tables = [v for k, v in names.items() if k in {"bq_table", "bq_news_table"}]
    views = {f"{table}_dedup" for table in tables}
    if len(set(topics)) < len(topics) or len(set(tables)) < len(tables) or views & set(tables):
        raise ConfigError(f"{where}: two streams would share a topic or a table: {names}")
