"""Where a stream lands: the sinks a consumer writes each batch to, as ``BQ_WRITE`` and
``GCS_TARGET`` say."""

from __future__ import annotations

import warnings

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.records.routes import Route
from pipeline_lib.sinks import Sink
from pipeline_lib.sinks.bigquery import BigQuerySink, DefaultStreamSink, StorageWriteSink
from pipeline_lib.sinks.gcs import GcsSink


def landing_sinks(
    settings: Settings,
    stream: str | Route = "ticks",
    file_format: str = "ndjson",
    bq_write: str | None = None,
) -> list[Sink]:
    """Where a stream lands: GCS objects (NDJSON or Parquet) and the BigQuery table,
    written as ``bq_write`` says (default: ``settings.bq_write``, ``BQ_WRITE``; the
    modes are :data:`pipeline_lib.core.config.BQ_WRITES`): through the Storage Write API,
    each record once in the table itself (``storage``) or at least once through the
    default stream, or by load jobs (see :mod:`pipeline_lib.sinks.bigquery`). With
    ``GCS_TARGET=off`` (the BigQuery sandbox has no bucket) BigQuery alone, said once."""
    mode = settings.bq_write if bq_write is None else bq_write
    tables = {
        "storage": StorageWriteSink,
        "storage-at-least-once": DefaultStreamSink,
        "load": BigQuerySink,
    }
    if mode not in tables:
        raise ConfigError(f"bq_write must be one of {', '.join(tables)}, got {mode!r}")
    table = tables[mode]
    if not settings.keeps_raw_objects:
        warnings.warn(GCS_OFF, stacklevel=2)  # shown once per place that asks
        return [table(settings, stream=stream)]
    return [
        GcsSink(settings, file_format=file_format),  # type: ignore[arg-type]
        table(settings, stream=stream),
    ]


GCS_OFF = "GCS_TARGET=off: no raw objects are kept; the stream lands in BigQuery alone"
