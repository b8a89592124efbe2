"""A student's own Google Cloud, free (issue 33): a target per service, GCS off, the
BigQuery sandbox (nothing streams with load jobs, no DML, streaming refused in one
line), partitions that expire, and a load a minute at most on real BigQuery.

No test here reaches Google: the sandbox's documented answers are played by fakes.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from google.api_core.exceptions import Forbidden

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.home import home_defaults
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.local import local_services
from pipeline_lib.records.batches import Batch
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks import SinkError, streaming_refused, with_retries
from pipeline_lib.sinks.bigquery import BigQuerySink, TableManager
from pipeline_lib.sinks.bigquery.table_manager import oldest_event
from pipeline_lib.sinks.landing import landing_sinks
from tests.fakes import RecordingSink
from tests.helpers import simulated

pytestmark = pytest.mark.unit

HOME = {"PIPELINE_HOME": "/tmp/unused-free-cloud"}
# Google's documented words for a project without billing that streams.
SANDBOX_REFUSAL = "Access Denied: Streaming insert is not allowed in the free tier"


def settings(**env: str) -> Settings:
    return Settings.from_env({**HOME, **env})


# --- a target per service -------------------------------------------------------------


def test_pipeline_target_is_the_shorthand_for_each_service():
    local = settings()
    assert local.targets == {"kafka": "local", "gcs": "local", "bigquery": "local"}
    cloud = settings(PIPELINE_TARGET="cloud", KAFKA_BOOTSTRAP_SERVERS="k.example.com:9092")
    assert cloud.targets == {"kafka": "cloud", "gcs": "cloud", "bigquery": "cloud"}
    assert cloud.storage_emulator_host is None and cloud.bigquery_emulator_host is None


def test_the_local_broker_and_gcs_emulator_with_a_real_bigquery():
    mixed = settings(BIGQUERY_TARGET="cloud")
    assert mixed.targets == {"kafka": "local", "gcs": "local", "bigquery": "cloud"}
    assert mixed.storage_emulator_host == "http://127.0.0.1:4443"
    assert mixed.bigquery_emulator_host is None  # real BigQuery
    assert [s.name for s in local_services(mixed)] == ["kafka", "gcs"]
    assert Settings.from_env(mixed.to_env()) == mixed


def test_gcs_off_keeps_no_raw_objects_and_starts_no_emulator():
    off = settings(GCS_TARGET="off", BIGQUERY_TARGET="cloud")
    assert not off.keeps_raw_objects and off.storage_emulator_host is None
    assert [s.name for s in local_services(off)] == ["kafka"]
    with pytest.raises(ConfigError, match="GCS_TARGET='nowhere'") as caught:
        settings(GCS_TARGET="nowhere")
    assert "off" in str(caught.value)
    with pytest.raises(ConfigError, match="BIGQUERY_TARGET"):
        settings(BIGQUERY_TARGET="off")  # only GCS may be off


def test_a_cloud_kafka_needs_its_address_named_by_the_variable_that_asked():
    with pytest.raises(ConfigError, match=r"^KAFKA_TARGET=cloud needs KAFKA_BOOTSTRAP_SERVERS"):
        settings(KAFKA_TARGET="cloud")
    with pytest.raises(ConfigError, match=r"^PIPELINE_TARGET=cloud needs KAFKA_BOOTSTRAP"):
        settings(PIPELINE_TARGET="cloud")


def test_a_home_adds_nothing_of_its_kafka_when_kafka_is_remote(tmp_path):
    env = {
        "PIPELINE_HOME": str(tmp_path),
        "KAFKA_TARGET": "cloud",
        "KAFKA_BOOTSTRAP_SERVERS": "kafka.example.com:9092",
    }
    (tmp_path / "kafka-cluster.json").write_text('{"brokers": 3}')
    assert set(home_defaults(env)) == {"PIPELINE_HOME"}


def test_with_gcs_off_a_stream_lands_in_bigquery_alone_said_once():
    off = settings(GCS_TARGET="off")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sinks = landing_sinks(off, bq_write="load")
    assert [sink.name for sink in sinks] == ["bigquery"]
    assert any("GCS_TARGET=off" in str(w.message) for w in seen)
    assert [sink.name for sink in landing_sinks(settings(), bq_write="load")] == [
        "gcs",
        "bigquery",
    ]


def test_status_shows_each_service_target():
    from pipeline_lib.cli.status import format_status

    off = settings(GCS_TARGET="off")
    document = {
        "target": off.target,
        "targets": off.targets,
        "services": [],
        "settings": off.public_dict(),
        "kafka_bootstrap_servers": off.kafka_bootstrap_servers,
        "kafka_connection": "PLAINTEXT",
        "gcs_endpoint": "-",
        "bigquery_endpoint": "http://127.0.0.1:9050",
    }
    text = format_status(document)
    assert "kafka local, gcs off, bigquery local" in text
    assert "gcs: off" in text


# --- the sandbox: nothing streams with load jobs, streaming refused in one line --------


class FakeBigQuery:
    """The calls a table manager makes of the BigQuery client, recorded; a table with
    the partitioning and a dataset with the default expiration a test gives."""

    def __init__(self, partition_field="ts", expiration_ms=None, dataset_expiration_ms=None):
        self.partition_field = partition_field
        self.expiration_ms = expiration_ms
        self.dataset_expiration_ms = dataset_expiration_ms
        self.calls: list[str] = []
        self.loads: list[tuple[str, bytes]] = []
        self.queries: list[str] = []
        self.configs: list = []

    def get_table(self, table_id, timeout=None, retry=None):
        self.calls.append(f"get_table {table_id}")
        partitioning = SimpleNamespace(field=self.partition_field, expiration_ms=self.expiration_ms)
        return SimpleNamespace(schema=[], time_partitioning=partitioning, labels={})

    def get_dataset(self, dataset_id, timeout=None, retry=None):
        self.calls.append(f"get_dataset {dataset_id}")
        return SimpleNamespace(default_partition_expiration_ms=self.dataset_expiration_ms)

    def insert_rows_json(self, *args, **kwargs):
        self.calls.append("insert_rows_json")
        return []

    def load_table_from_file(self, file, table_id, job_config=None, **kwargs):
        self.calls.append(f"load {table_id}")
        self.loads.append((table_id, file.read()))
        return SimpleNamespace(result=lambda **kw: None)

    def query(self, sql, job_config=None, **kwargs):
        self.queries.append(sql)
        self.configs.append(job_config)
        return SimpleNamespace(result=lambda **kw: [])


def batch_of(ticks) -> Batch:
    part = TICKS.partition_batch("t", 0, ticks, list(range(len(ticks))), keys=[b"K"] * len(ticks))
    return Batch([part], datetime.now(UTC), "g", 1)


def test_the_load_job_writer_writes_its_run_summary_by_load_job_too():
    client = FakeBigQuery()
    sink = BigQuerySink(settings(BQ_WRITE="load"))
    sink.table_manager._client = client
    assert sink.table_manager.summary_by_load
    sink.table_manager.summarize(batch_of(simulated(50, seed=3)), SimpleNamespace(rejected=[]))
    assert "insert_rows_json" not in client.calls  # nothing streams
    (table_id, payload), *_ = client.loads
    assert table_id.endswith("ticks_runs") and b'"symbol"' in payload


def test_a_streaming_writer_keeps_streaming_its_summary():
    client = FakeBigQuery()
    manager = TableManager(settings(), client=client)
    manager.summarize(batch_of(simulated(50, seed=3)), SimpleNamespace(rejected=[]))
    assert "insert_rows_json" in client.calls and not client.loads


def test_streaming_refused_for_lack_of_billing_is_one_line_naming_the_setting():
    def stream() -> None:
        raise Forbidden(SANDBOX_REFUSAL)

    with pytest.raises(SinkError) as caught:
        with_retries(stream, "writing 10 rows", sleep=lambda s: None)
    message = str(caught.value)
    assert "\n" not in message and "BQ_WRITE=load" in message and "free tier" in message
    assert streaming_refused(Forbidden("Access Denied: dataset")) is None  # another cause
    assert streaming_refused(caught.value) is None  # said once, not wrapped again


def test_on_real_bigquery_the_load_job_writer_takes_a_batch_a_minute_at_most():
    real = settings(BQ_WRITE="load", BIGQUERY_TARGET="cloud")
    assert BigQuerySink(real).min_batch_interval_s == 60.0
    assert BigQuerySink(settings(BQ_WRITE="load")).min_batch_interval_s == 0.0  # emulator
    slow = RecordingSink()
    slow.min_batch_interval_s = 60.0
    consumer = SinkConsumer(
        real, sinks=[slow], flush_interval=1.0, consumer_factory=lambda listener: None
    )
    assert consumer.flush_interval == 60.0
    fast = SinkConsumer(
        real, sinks=[RecordingSink()], flush_interval=1.0, consumer_factory=lambda listener: None
    )
    assert fast.flush_interval == 1.0


# --- no DML at setup, and partitions that expire -----------------------------------------


def test_a_table_made_now_fills_no_summary_and_older_tables_use_no_dml_on_bigquery():
    from google.api_core.exceptions import NotFound

    class NewTable(FakeBigQuery):
        def get_table(self, table_id, timeout=None, retry=None):
            raise NotFound("no table")

        def create_dataset(self, *args, **kwargs):
            pass

        def create_table(self, table, *args, **kwargs):
            self.calls.append(f"create {table.table_id} {table.time_partitioning}")
            return SimpleNamespace(labels={})

        def update_table(self, table, fields, **kwargs):
            return table

    client = NewTable()
    manager = TableManager(settings(BIGQUERY_TARGET="cloud"), client=client)
    manager._create_summary(fill=False)
    assert client.queries == []  # a new table: nothing to fill, no query at all
    manager._create_summary(fill=True)
    assert client.queries and not any("INSERT" in q.upper() for q in client.queries)
    (config,) = client.configs  # the results append to the summary, under the ceiling
    assert (
        config.destination.table_id == "ticks_runs" and config.write_disposition == "WRITE_APPEND"
    )
    assert config.maximum_bytes_billed == 1 << 30


def test_ingestion_partitioning_follows_the_landing_time():
    from pipeline_lib.sinks.bigquery.table_manager import PARTITION_COLUMN

    assert settings().bq_partition_by == "event"
    assert PARTITION_COLUMN[settings(BQ_PARTITION_BY="ingestion").bq_partition_by] == "ingested_at"
    with pytest.raises(ConfigError, match="BQ_PARTITION_BY"):
        settings(BQ_PARTITION_BY="hourly")


def recent(n: int = 20) -> list:
    """Ticks of the last minutes (the test helpers' ticks are of 2024)."""
    now = datetime.now(UTC)
    return [t._replace(ts=now - timedelta(minutes=n - i)) for i, t in enumerate(simulated(n))]


def replay_of_2004() -> list:
    start = datetime(2004, 3, 5, 14, 30, tzinfo=UTC)
    return [t._replace(ts=start + timedelta(minutes=i)) for i, t in enumerate(simulated(20))]


@pytest.mark.parametrize(
    "client",
    [
        FakeBigQuery(expiration_ms=60 * 86_400_000),  # the table's own
        FakeBigQuery(dataset_expiration_ms=60 * 86_400_000),  # the sandbox's dataset default
    ],
    ids=["table", "dataset"],
)
def test_events_older_than_the_partition_expiration_are_refused_in_one_line(client):
    manager = TableManager(settings(), client=client)
    old = batch_of(replay_of_2004())
    assert oldest_event(old) == datetime(2004, 3, 5, 14, 30, tzinfo=UTC)
    with pytest.raises(SinkError) as caught:
        manager.check_expiry(old)
    message = str(caught.value)
    assert "\n" not in message and "2004-03-05" in message and "60 days" in message
    assert "BQ_PARTITION_BY=ingestion" in message and "without an error" in message
    manager.check_expiry(batch_of(recent()))  # today's events land


def test_events_close_to_expiring_are_refused_and_landing_time_partitions_never_are():
    manager = TableManager(settings(), client=FakeBigQuery(expiration_ms=60 * 86_400_000))
    now = datetime.now(UTC)
    nearly = [t._replace(ts=now - timedelta(days=59, hours=12)) for t in simulated(5)]
    with pytest.raises(SinkError, match="expire within a day"):
        manager.check_expiry(batch_of(nearly))
    fine = [t._replace(ts=now - timedelta(days=30)) for t in simulated(5)]
    manager.check_expiry(batch_of(fine))
    by_landing = TableManager(
        settings(), client=FakeBigQuery(partition_field="ingested_at", expiration_ms=86_400_000)
    )
    by_landing.check_expiry(batch_of(replay_of_2004()))  # today's partition: nothing refused
