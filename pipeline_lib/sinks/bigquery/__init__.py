"""BigQuery, by composition: one table manager, one type mapper, three writers.

* :class:`TableManager`: the dataset, the table, its dedup view, the run summary,
  the columns added for fields of a newer contract, and the emulator's quirks
  (:class:`EmulatorQuirks`, a capability it holds on the emulator only).
* :class:`BigQueryTypeMapper` (:data:`TYPES`): kinds, BigQuery's standard and legacy
  names and Arrow types, both ways, from ``records.schema.KINDS``.
* The writers, each holding a table manager (``BQ_WRITE`` picks one): load jobs
  (:class:`BigQuerySink`), the Storage Write API exactly once (:class:`StorageWriteSink`)
  and its default stream at least once (:class:`DefaultStreamSink`). None extends another.

The names the rest of the package uses are importable from here.
"""

from pipeline_lib.sinks.bigquery.load_jobs import BigQuerySink, RowLoader, wait_for_job
from pipeline_lib.sinks.bigquery.rows import arrow_schema, batch_table, row_bytes
from pipeline_lib.sinks.bigquery.storage_write import DefaultStreamSink, StorageWriteSink
from pipeline_lib.sinks.bigquery.table_manager import (
    TABLE_SCHEMA,
    EmulatorQuirks,
    TableManager,
    bigquery_schema,
    dedup_sql,
    quick_retry,
)
from pipeline_lib.sinks.bigquery.type_mapper import TYPES, BigQueryTypeMapper

__all__ = [
    "TABLE_SCHEMA",
    "TYPES",
    "BigQuerySink",
    "BigQueryTypeMapper",
    "DefaultStreamSink",
    "EmulatorQuirks",
    "RowLoader",
    "StorageWriteSink",
    "TableManager",
    "arrow_schema",
    "batch_table",
    "bigquery_schema",
    "dedup_sql",
    "quick_retry",
    "row_bytes",
    "wait_for_job",
]
