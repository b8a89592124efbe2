"""GCS sink: one object per partition batch, named so a replay overwrites, never adds.

Name: ``<prefix>/topic=<topic>/date=<YYYY-MM-DD>/partition=<p>/<first offset>.<ext>``
(Hive-style keys, so BigQuery external tables, pyarrow and Spark read the tree as a
partitioned dataset). A partition batch is split by event date (UTC), so every
record sits under its own date; the first offset of each piece is zero-padded, so
names sort in time order and a redelivered batch, which starts at the same
committed offset, lands on the same names.

Objects hold newline-delimited JSON, one line per record: the message value when it
already is the record's canonical one-line JSON (what the producer sends), else the
record re-serialised (a pretty-printed or duplicate-key value would break NDJSON
readers). So every object is valid NDJSON and replayable into Kafka. Parquet with
``file_format="parquet"``.
"""

from __future__ import annotations

import contextlib
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from pipeline_lib.clients import storage_client
from pipeline_lib.config import Settings
from pipeline_lib.sinks import (
    Batch,
    PartitionBatch,
    Sink,
    SinkError,
    WriteResult,
    reraise_refusal,
    with_retries,
)
from pipeline_lib.streams import TICKS, Stream, get_stream

UPLOAD_TIMEOUT_S = 30


def object_name(part: PartitionBatch, prefix: str, extension: str) -> str:
    """Name of a single-date piece: its first record's date and offset."""
    day = part.records[0].ts.date().isoformat()
    return (
        f"{prefix}/topic={part.topic}/date={day}/partition={part.partition}/"
        f"{part.offsets[0]:020d}.{extension}"
    )


def split_by_date(part: PartitionBatch) -> list[PartitionBatch]:
    """The records of ``part`` grouped by event date (UTC), in offset order per group."""
    groups: dict[object, PartitionBatch] = {}
    for record, value, offset in zip(part.records, part.values, part.offsets, strict=True):
        day = record.ts.date()
        group = groups.get(day)
        if group is None:
            group = groups[day] = PartitionBatch(part.topic, part.partition, offset)
        group.records.append(record)
        group.values.append(value)
        group.offsets.append(offset)
    return list(groups.values())


def ndjson_bytes(part: PartitionBatch, stream: Stream = TICKS) -> bytes:
    """One canonical JSON line per record: the same bytes as the message value when
    that already is the record's canonical JSON (what our producer sends)."""
    encode = stream.encode
    return b"\n".join([encode(record) for record in part.records]) + b"\n"


def parquet_bytes(part: PartitionBatch) -> bytes:
    """The partition batch as a Parquet file (columns of the record's schema)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: [getattr(t, name) for t in part.records] for name in part.records[0]._fields}
    table = pa.table(columns)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


class GcsSink(Sink):
    name = "gcs"

    def __init__(
        self,
        settings: Settings,
        prefix: str = "raw",
        file_format: Literal["ndjson", "parquet"] = "ndjson",
        parallel_uploads: int = 4,
    ) -> None:
        if file_format not in {"ndjson", "parquet"}:
            raise SinkError("file_format must be 'ndjson' or 'parquet'")
        self.settings = settings
        self.stream = get_stream(settings.stream)
        self.prefix = prefix.strip("/")
        self.file_format = file_format
        self.parallel_uploads = parallel_uploads
        self._client = None
        self._bucket = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def bucket(self):
        if self._bucket is None:
            self._client = storage_client(self.settings)
            self._bucket = self._client.bucket(self.settings.gcs_bucket)
        return self._bucket

    def setup(self) -> None:
        from google.api_core.exceptions import Conflict

        def create() -> None:
            if not self.bucket.exists(timeout=UPLOAD_TIMEOUT_S, retry=None):
                with contextlib.suppress(Conflict):  # created meanwhile by another consumer
                    self._client.create_bucket(
                        self.settings.gcs_bucket, timeout=UPLOAD_TIMEOUT_S, retry=None
                    )

        with_retries(create, f"creating bucket gs://{self.settings.gcs_bucket}")

    def _upload(self, part: PartitionBatch) -> str:
        if self.file_format == "parquet":
            data, extension, content_type = parquet_bytes(part), "parquet", "application/parquet"
        else:
            data, extension, content_type = (
                ndjson_bytes(part, self.stream),
                "ndjson",
                "application/x-ndjson",
            )
        name = object_name(part, self.prefix, extension)
        blob = self.bucket.blob(name)
        try:
            with_retries(
                lambda: blob.upload_from_string(
                    data, content_type=content_type, timeout=UPLOAD_TIMEOUT_S, retry=None
                ),
                f"uploading gs://{self.settings.gcs_bucket}/{name}",
            )
        except Exception as error:
            reraise_refusal(
                error,
                f"GCS refused gs://{self.settings.gcs_bucket}/{name}",
                "Check the bucket exists (`python -m pipeline_lib setup`) and your permissions.",
            )
        return f"gs://{self.settings.gcs_bucket}/{name}"

    def write(self, batch: Batch) -> WriteResult:
        parts = [piece for p in batch.parts if p.records for piece in split_by_date(p)]
        if not parts:
            return WriteResult(self.name, 0)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallel_uploads, thread_name_prefix="gcs")
        locations = list(self._pool.map(self._upload, parts))
        return WriteResult(self.name, sum(len(p.records) for p in parts), locations)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
