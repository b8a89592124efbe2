"""Where each stream's records go: its topic, dead-letter topic, consumer group,
BigQuery table and view, and GCS folder.

:func:`route` is the one function that gives a registered stream
(:mod:`pipeline_lib.records.streams`) these names from the settings. The producer, the
consumer, the sinks, the dead-letter writer, the monitor and setup take a route,
so a stream is a route, not a mode of the settings; ``Settings`` holds only what
the environment says.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.core.names import run_names
from pipeline_lib.core.sql import table_ref
from pipeline_lib.records.streams import Stream, get_stream, stream_names

RAW_PREFIX = "raw"


def topic_folder(topic: str, prefix: str = RAW_PREFIX) -> str:
    """The GCS folder of a topic's raw objects: the one spelling of ``raw/topic=<t>/``."""
    return f"{prefix}/topic={topic}/"


@dataclass(frozen=True)
class Route:
    """One stream's names. Build it with :func:`route`."""

    stream: Stream
    topic: str
    dead_letter_topic: str
    group: str
    project: str
    dataset: str
    table: str

    @property
    def name(self) -> str:
        return self.stream.name

    @property
    def table_id(self) -> str:
        """Fully qualified ``project.dataset.table`` of the raw table."""
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def dedup_view(self) -> str:
        """Name of the view that shows each event once (what analysis reads)."""
        return f"{self.table}_dedup"

    @property
    def view_id(self) -> str:
        """Fully qualified ``project.dataset.<table>_dedup``."""
        return f"{self.project}.{self.dataset}.{self.dedup_view}"

    @property
    def table_sql(self) -> str:
        """The raw table as SQL text (backquoted, validated identifiers only)."""
        return table_ref(self.project, self.dataset, self.table)

    @property
    def view_sql(self) -> str:
        """The dedup view as SQL text (backquoted, validated identifiers only)."""
        return table_ref(self.project, self.dataset, self.dedup_view)

    @property
    def runs_table(self) -> str:
        """Name of the run summary (:mod:`pipeline_lib.sinks.bigquery.run_summary`)."""
        return f"{self.table}_runs"

    @property
    def runs_id(self) -> str:
        """Fully qualified ``project.dataset.<table>_runs``."""
        return f"{self.project}.{self.dataset}.{self.runs_table}"

    @property
    def runs_sql(self) -> str:
        """The run summary as SQL text (backquoted, validated identifiers only)."""
        return table_ref(self.project, self.dataset, self.runs_table)

    @property
    def gcs_folder(self) -> str:
        """Where the raw objects of the stream's topic go in the bucket."""
        return topic_folder(self.topic)


# The streams whose names the environment sets: stream -> the Settings fields that hold
# its topic, dead-letter topic and table (PIPELINE_TOPIC, ..., BQ_NEWS_TABLE).
SETTINGS_FIELDS: dict[str, tuple[str, str, str]] = {
    "ticks": ("topic", "dead_letter_topic", "bq_table"),
    "news": ("news_topic", "news_dead_letter_topic", "bq_news_table"),
}
# The stream that reads with the consumer group itself; every other one with
# ``<consumer group>-<stream>``.
FIRST_STREAM = "ticks"


def route(settings: Settings, stream: str | Stream | Route = "ticks") -> Route:
    """The names of ``stream`` (a registered stream or its name) under ``settings``;
    a Route is returned as it is, so every component takes either.

    One rule for every stream ``s``: its topic, dead letters and table are those the
    settings hold for it (:data:`SETTINGS_FIELDS`: ``PIPELINE_TOPIC``,
    ``PIPELINE_NEWS_TOPIC``, ...), or else topic ``stock-s``, dead letters
    ``stock-s.dlq`` and table ``s``; its group is the consumer group for ticks and
    ``<consumer group>-s`` for any other.
    """
    if isinstance(stream, Route):
        return stream
    kind = get_stream(stream) if isinstance(stream, str) else stream
    fields = SETTINGS_FIELDS.get(kind.name)
    if fields:
        topic, dead_letter_topic, table = (getattr(settings, f) for f in fields)
    else:
        topic, table = f"stock-{kind.name}", kind.name
        dead_letter_topic = f"{topic}.dlq"
        taken = {getattr(settings, f) for names in SETTINGS_FIELDS.values() for f in names}
        if taken & {topic, dead_letter_topic, table}:
            raise ConfigError(
                f"stream {kind.name!r} would share its topic or table with "
                f"{' or '.join(SETTINGS_FIELDS)}: register it under another name"
            )
    group = settings.consumer_group
    if kind.name != FIRST_STREAM:
        group = f"{group}-{kind.name}"
    return Route(
        kind, topic, dead_letter_topic, group, settings.gcp_project, settings.bq_dataset, table
    )


def routes(settings: Settings, choice: str = "all") -> list[Route]:
    """The routes of ``choice``: a stream's name, or ``all`` / ``both`` (every stream)."""
    return [route(settings, name) for name in stream_names(choice)]


def drill_settings(settings: Settings, label: str) -> Settings:
    """Names of its own for a drill or lesson run from a notebook (``label``, e.g.
    ``crash-drill``): topics and a consumer group for this run, in the settings' bucket
    and dataset, and the table ``<BQ_TABLE>_<label>`` (which the drill makes anew);
    see :func:`pipeline_lib.core.names.run_names`."""
    return run_names(settings, label, within=True)
