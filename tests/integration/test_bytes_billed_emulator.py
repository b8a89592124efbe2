"""The ceiling on bytes billed against the BigQuery emulator (issue 33, item 4): what
the emulator does with ``maximum_bytes_billed`` and with dry runs, and the package's
answer to it.

Seen here (bqemulator 1.4.0): the emulator accepts a query job carrying
``maximum_bytes_billed`` and enforces nothing (a ceiling of one byte runs, and the job
it keeps no longer shows the ceiling). It answers dry runs (the query is checked: a
broken one fails) with ``total_bytes_processed`` 0 whatever the table holds, so its
answer is no estimate: ``dry_run`` says None there, and the bill table of notebook 04
says "the emulator does not estimate" instead of numbers. A refusal over the ceiling
cannot be seen here: the unit tests build it as BigQuery sends it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import bigquery

from pipeline_lib.analysis import queries
from pipeline_lib.clients.google import bigquery_client, dry_run, dry_run_bytes, run_query
from pipeline_lib.core.config import Settings
from pipeline_lib.records.batches import Batch
from pipeline_lib.records.routes import route
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks.bigquery import BigQuerySink
from tests.helpers import simulated

pytestmark = pytest.mark.integration


@pytest.fixture
def landed(settings: Settings) -> Settings:
    """A run of 2,000 ticks in the ticks table; the news table made, empty."""
    ticks = BigQuerySink(settings)
    ticks.setup()
    records = simulated(2_000, seed=7)
    part = TICKS.partition_batch("t", 0, records, list(range(len(records))))
    ticks.write(Batch([part], datetime.now(UTC), "g", 1))
    ticks.close()
    news = BigQuerySink(settings, stream="news")
    news.setup()
    news.close()
    return settings


def test_the_emulator_takes_the_ceiling_and_enforces_nothing(landed: Settings) -> None:
    table = route(landed).table_sql
    sql = f"SELECT COUNT(*) AS n, SUM(volume) AS volume FROM {table}"  # noqa: S608
    rows = run_query(landed, sql, name="count")
    assert next(iter(rows)).n == 2_000
    tiny = landed.with_overrides(bq_max_bytes_billed=1)  # below any real query's bill
    assert next(iter(run_query(tiny, sql, name="count"))).n == 2_000  # runs all the same


def test_the_emulator_answers_dry_runs_with_zero_bytes_so_no_estimate(landed: Settings) -> None:
    table = route(landed).table_sql
    sql = f"SELECT event_id, close, volume FROM {table} WHERE symbol = @symbol"  # noqa: S608
    symbol = [bigquery.ScalarQueryParameter("symbol", "STRING", "AAPL")]
    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False, query_parameters=symbol)
    job = bigquery_client(landed).query(sql, job_config=config)
    assert job.total_bytes_processed == 0  # 2,000 rows in the table: no cost model
    assert dry_run(landed, sql, symbol) is None
    assert dry_run_bytes(landed, sql, symbol) is None
    with pytest.raises(GoogleAPICallError):  # the query is still checked
        dry_run(landed, f"SELECT no_such_column FROM {table}")  # noqa: S608


def test_the_bill_table_says_the_emulator_does_not_estimate(landed: Settings) -> None:
    """Every read of notebook 04 goes through the emulator's dry run; no number shown."""
    bills = queries.bill_estimates(landed)
    assert len(bills) == 11
    assert bills["bytes_processed"].isna().all() and bills["billed_at_least"].isna().all()
    assert set(bills["ceiling"]) == {landed.bq_max_bytes_billed}
    assert set(bills["note"]) == {"the emulator does not estimate (it has no cost model)"}
