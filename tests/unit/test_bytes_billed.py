"""The ceiling on bytes billed (issue 33, item 4), without a network: every query job
the package builds carries ``maximum_bytes_billed`` = ``BQ_MAX_BYTES_BILLED``; a query
BigQuery refuses over it becomes one line naming the query, its estimate and the
setting; dry runs estimate without a ceiling, and say nothing on the emulator; no
module runs a query but through ``pipeline_lib.clients.google``.

The refusals are built as the documentation and the client library build them: a
``BadRequest`` whose errors carry the reason ``bytesBilledLimitExceeded`` (an HTTP
400 on the request), and the failed job's ``errorResult`` turned into an exception by
google-cloud-bigquery itself (which maps that reason to a 500).
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from google.api_core.exceptions import BadRequest
from google.cloud.bigquery.job.base import _error_result_to_exception

from pipeline_lib.analysis import monitor, queries
from pipeline_lib.clients import google
from pipeline_lib.clients.google import BytesBilledLimit, DryRun, dry_run, dry_run_bytes, run_query
from pipeline_lib.core.config import Settings
from pipeline_lib.lessons import crash_drill, schema_evolution
from pipeline_lib.records.routes import route
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks import transient
from pipeline_lib.sinks.bigquery.storage_write import StorageWriteSink
from tests.helpers import simulated

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline_lib"
CEILING = 50 * 2**20  # BQ_MAX_BYTES_BILLED in these tests: 50 MiB
NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
MIB = 2**20
# Real BigQuery's words (reason and message) for a query over the ceiling.
REFUSAL = {
    "reason": "bytesBilledLimitExceeded",
    "message": f"Query exceeded limit for bytes billed: {CEILING}. 3145728000 or higher required.",
}


def local() -> Settings:
    """Settings with the emulator (the local default), the ceiling set by variable."""
    return Settings.from_env({"PIPELINE_HOME": "/tmp/unused", "BQ_MAX_BYTES_BILLED": str(CEILING)})


def cloud() -> Settings:
    """The same, BigQuery itself (no emulator host): dry runs estimate."""
    return local().with_overrides(bigquery_emulator_host=None)


class Rows:
    """A RowIterator: rows with any attribute (0), and a DataFrame."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def __iter__(self):
        row = {**dict.fromkeys(ROW_FIELDS, 0), "kafka_topic": "t", "kafka_partition": 0}
        return iter([SimpleNamespace(**row)])

    def to_dataframe(self, create_bqstorage_client: bool = True) -> pd.DataFrame:
        assert create_bqstorage_client is False
        return self.frame.copy()


ROW_FIELDS = ("row_count", "records", "events", "rows_loaded", "event_id", "n", "kafka_offset")


class Job:
    def __init__(self, client: FakeBigQuery, sql: str, config: Any) -> None:
        self.client, self.sql, self.config = client, sql, config
        self.total_bytes_processed = client.estimate if config.dry_run else None
        self.referenced_tables = [object()] * client.tables if config.dry_run else []

    def result(self, **options: Any) -> Rows:
        self.client.waits.append(options)
        if self.client.refuse_at == "result":
            raise self.client.refusal
        return Rows(self.client.answer(self.sql))


class FakeBigQuery:
    """A google-cloud-bigquery Client that records every query job's configuration
    and call options; answers the run summary with one run and anything else with
    one row of zeros; refuses, if told, at the request or at the result."""

    def __init__(
        self,
        refusal: Exception | None = None,
        refuse_at: str = "",
        estimate: int | None = 3_000_000_000,
        tables: int = 2,
        dry_runs_fail: bool = False,
    ) -> None:
        self.jobs: list[tuple[str, Any, dict[str, Any]]] = []
        self.waits: list[dict[str, Any]] = []
        self.refusal, self.refuse_at = refusal, refuse_at
        self.estimate, self.tables, self.dry_runs_fail = estimate, tables, dry_runs_fail

    def query(self, sql: str, job_config: Any = None, **options: Any) -> Job:
        self.jobs.append((sql, job_config, options))
        if job_config.dry_run and self.dry_runs_fail:
            raise BadRequest("dry run refused")
        if self.refuse_at == "query" and not job_config.dry_run:
            raise self.refusal
        return Job(self, sql, job_config)

    def answer(self, sql: str) -> pd.DataFrame:
        if "_runs`" in sql:
            ts = pd.to_datetime([NOW], utc=True)
            frame = {"run": ["r1"], "symbol": ["AAA"], "first_ts": ts, "last_ts": ts}
            return pd.DataFrame({**frame, "landed_at": ts})
        columns = ["events", "stories", "first_close", "last_close", "minute_volatility"]
        return pd.DataFrame({c: [1] for c in columns})

    def runs(self) -> list[Any]:
        return [config for _, config, _ in self.jobs if not config.dry_run]

    def dry_runs(self) -> list[Any]:
        return [config for _, config, _ in self.jobs if config.dry_run]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBigQuery:
    """The fake, as every client the package would build."""
    client = FakeBigQuery()
    monkeypatch.setattr(google, "bigquery_client", lambda settings: client)
    return client


# --- every query job carries the ceiling ----------------------------------------------


def test_the_setting_reaches_the_job() -> None:
    client = FakeBigQuery()
    run_query(local(), "SELECT 1", name="one", client=client)
    ((_, config, _),) = client.jobs
    assert config.maximum_bytes_billed == CEILING
    assert config.to_api_repr()["query"]["maximumBytesBilled"] == str(CEILING)
    assert Settings.from_env({"PIPELINE_HOME": "/tmp/unused"}).bq_max_bytes_billed == 1 << 30


def held_offsets_of_a_sink(settings: Settings) -> None:
    sink = object.__new__(StorageWriteSink)  # what held_offsets reads, nothing more
    sink.settings, sink.route, sink.stream = settings, route(settings), TICKS
    sink.table_manager = SimpleNamespace(client=google.bigquery_client(settings))
    ticks = simulated(10)
    sink.held_offsets([TICKS.partition_batch("t", 0, ticks, list(range(10)))])


EVERY_READ = {
    "run_spans": lambda s: queries.run_spans(s),
    "runs": lambda s: queries.runs(s),
    "latest_run": lambda s: queries.latest_run(s),
    "event_count": lambda s: queries.event_count(s, "r1"),
    "symbol_summary": lambda s: queries.symbol_summary(s, "r1"),
    "latest_ticks": lambda s: queries.latest_ticks(s, "AAA", timedelta(minutes=5), "r1"),
    "landed_ticks": lambda s: queries.landed_ticks(s, "AAA", "r1", NOW),
    "live_feed": lambda s: queries.LiveFeed(s).ticks("AAA", timedelta(minutes=5)),
    "minute_bars": lambda s: queries.minute_bars(s, "AAA", None, "r1"),
    "top_movers": lambda s: queries.top_movers(s, run="r1"),
    "news_count": lambda s: queries.news_count(s, "r1"),
    "news_summary": lambda s: queries.news_summary(s, "r1"),
    "latest_news": lambda s: queries.latest_news(s, "AAA", None, "r1"),
    "news_and_returns": lambda s: queries.news_and_returns(s, "r1"),
    "bill_estimates": lambda s: queries.bill_estimates(s),
    "bigquery_summary": lambda s: monitor.bigquery_summary(s),
    "bigquery_event_ids": lambda s: monitor.bigquery_event_ids(s, "r1"),
    "crash_drill_counts": lambda s: crash_drill.raw_counts(s),
    "schema_lesson": lambda s: schema_evolution._query(s, "SELECT 1", "a read"),
    "held_offsets": held_offsets_of_a_sink,
}


@pytest.mark.parametrize("read", EVERY_READ.values(), ids=EVERY_READ.keys())
def test_every_query_the_package_runs_carries_the_ceiling(fake: FakeBigQuery, read) -> None:
    with contextlib.suppress(KeyError, IndexError, ValueError, TypeError):
        read(cloud())  # the fake answers made-up rows; only the jobs matter here
    assert fake.runs(), "a read that sent no query job"
    assert {config.maximum_bytes_billed for config in fake.runs()} == {CEILING}
    for config in fake.dry_runs():  # bill nothing; must estimate past the ceiling too
        assert config.maximum_bytes_billed is None and config.use_query_cache is False


def test_the_held_offsets_query_keeps_its_bounds(fake: FakeBigQuery) -> None:
    """The sink's own retries decide: each call bounded, no job run again by the client."""
    from pipeline_lib.sinks.bigquery.write_api import CALL_TIMEOUT_S

    held_offsets_of_a_sink(cloud())
    ((_, config, options),) = fake.jobs
    assert options["timeout"] == CALL_TIMEOUT_S and options["job_retry"] is None
    assert options["retry"] is not None
    (wait,) = fake.waits
    assert wait["timeout"] == CALL_TIMEOUT_S and wait["job_retry"] is None
    assert "timeout" in wait and wait["retry"] is options["retry"]
    assert config.maximum_bytes_billed == CEILING


# --- a query over the ceiling: one line ---------------------------------------------------


def refusals() -> dict[str, tuple[Exception, str]]:
    """The refusal as BigQuery sends it on the request (400), and as the client library
    raises a failed job's errorResult (it maps the reason to a 500)."""
    from google.api_core.exceptions import InternalServerError

    job_error = _error_result_to_exception(dict(REFUSAL), [dict(REFUSAL)])
    assert isinstance(job_error, InternalServerError)
    return {
        "http_400_on_the_request": (BadRequest(REFUSAL["message"], errors=[REFUSAL]), "query"),
        "failed_job_at_the_result": (job_error, "result"),
    }


@pytest.mark.parametrize("refusal, at", refusals().values(), ids=refusals().keys())
def test_a_query_over_the_ceiling_fails_with_one_line(refusal: Exception, at: str) -> None:
    client = FakeBigQuery(refusal, at, estimate=3_000_000_000, tables=2)
    with pytest.raises(BytesBilledLimit) as caught:
        run_query(cloud(), "SELECT * FROM big", name="symbol_summary", client=client)
    line = str(caught.value)
    assert "\n" not in line
    assert "'symbol_summary'" in line  # the query
    assert "3,000,000,000 bytes" in line  # its estimate (the dry run)
    assert f"{CEILING:,} bytes" in line and "BQ_MAX_BYTES_BILLED" in line  # the setting
    assert "3,145,728,000 bytes" in line  # what BigQuery said it needs
    assert caught.value.__cause__ is refusal
    (dry,) = client.dry_runs()
    assert dry.dry_run and dry.maximum_bytes_billed is None
    # the raw refusal looks transient to the sink's retries (a 500); the line does not
    assert transient(refusal) == (at == "result") and not transient(caught.value)


def test_the_line_says_so_when_there_is_no_estimate() -> None:
    refusal, _ = refusals()["failed_job_at_the_result"]
    for settings, client in [
        (cloud(), FakeBigQuery(refusal, "result", dry_runs_fail=True)),  # the dry run fails
        (local(), FakeBigQuery(refusal, "result")),  # the emulator: no estimate
    ]:
        with pytest.raises(BytesBilledLimit, match="no dry run estimate") as caught:
            run_query(settings, "SELECT 1", name="q", client=client)
        assert "3,145,728,000 bytes" in str(caught.value)
        assert "3,000,000,000" not in str(caught.value)


def test_other_refusals_pass_through_unchanged() -> None:
    other = BadRequest("Syntax error", errors=[{"reason": "invalidQuery", "message": "no"}])
    client = FakeBigQuery(other, "result")
    with pytest.raises(BadRequest) as caught:
        run_query(cloud(), "SELEC 1", name="q", client=client)
    assert caught.value is other and not client.dry_runs()


def test_the_status_summary_shows_the_whole_line(fake: FakeBigQuery) -> None:
    fake.refusal, fake.refuse_at = BadRequest(REFUSAL["message"], errors=[REFUSAL]), "result"
    summary = monitor.bigquery_summary(cloud())
    assert summary["error"].startswith("BigQuery refused the query 'bigquery_summary'")
    assert summary["error"].endswith("a shorter window).")


# --- dry runs ------------------------------------------------------------------------------


def test_a_dry_run_estimates_on_bigquery_and_says_nothing_on_the_emulator() -> None:
    client = FakeBigQuery(estimate=12_345_678, tables=3)
    assert dry_run(cloud(), "SELECT 1", client=client) == DryRun(12_345_678, 3)
    assert dry_run_bytes(cloud(), "SELECT 1", client=client) == 12_345_678
    assert dry_run(local(), "SELECT 1", client=client) is None  # it answers 0, always
    assert dry_run_bytes(local(), "SELECT 1", client=client) is None
    assert len(client.dry_runs()) == 4 and not client.runs()  # still sent: it must parse


def test_the_least_billed_is_rounded_up_to_the_mib_and_10_mib_a_table() -> None:
    assert DryRun(0, 0).billed_at_least == 10 * MIB  # a query bills 10 MB at least
    assert DryRun(1, 3).billed_at_least == 30 * MIB  # 10 MB a table referenced
    assert DryRun(40 * MIB + 1, 2).billed_at_least == 41 * MIB  # rounded up to the MB


def test_the_bill_table_has_a_row_per_read_of_the_notebook(fake: FakeBigQuery) -> None:
    fake.estimate, fake.tables = 5 * MIB, 1
    bills = queries.bill_estimates(cloud(), run="latest", window=timedelta(minutes=30))
    assert len(fake.runs()) == 2  # only the two run summaries ran: they bound the reads
    assert list(bills["query"]) == [
        "run_spans",
        "event_count",
        "symbol_summary",
        "minute_bars",
        "returns_and_volatility",
        "latest_ticks",
        "run_spans(news)",
        "news_summary",
        "news_count",
        "latest_news",
        "news_and_returns",
    ]
    assert set(bills["bytes_processed"]) == {5 * MIB}
    assert set(bills["billed_at_least"]) == {10 * MIB}  # BigQuery's minimum
    assert set(bills["ceiling"]) == {CEILING} and bills["within_ceiling"].all()
    assert set(bills["note"]) == {""}
    # the reads as the notebook sends them: bounded by the latest run and its symbol
    reads = [(sql, config) for sql, config, _ in fake.jobs if config.dry_run]
    values = {p.name: p.value for _, c in reads for p in c.query_parameters}
    assert values["run"] == "r1" and values["symbol"] == "AAA"
    fake.estimate = 60 * MIB  # over the ceiling
    assert not queries.bill_estimates(cloud())["within_ceiling"].any()


def test_the_bill_table_on_the_emulator_says_it_does_not_estimate(fake: FakeBigQuery) -> None:
    bills = queries.bill_estimates(local())
    assert bills["bytes_processed"].isna().all() and bills["billed_at_least"].isna().all()
    assert bills["within_ceiling"].isna().all() and set(bills["ceiling"]) == {CEILING}
    assert set(bills["note"]) == {"the emulator does not estimate (it has no cost model)"}
    queries.table(bills).to_html()  # shown as the notebook shows it


# --- one way to run a query -----------------------------------------------------------------


def test_no_module_runs_a_query_but_through_the_google_client_module():
    """clients/google.py is the one place: a query sent elsewhere would carry no ceiling."""
    allowed = {PACKAGE / "clients" / "google.py"}
    sends = re.compile(r"\.query\(")
    elsewhere = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path not in allowed and sends.search(path.read_text())
    ]
    assert elsewhere == []
