"""GCS sink: one object per partition batch, named so a replay replaces, never adds.

Name: ``<prefix>/topic=<topic>/date=<YYYY-MM-DD>/partition=<p>/<first offset>.<ext>``
(Hive-style keys, so BigQuery external tables, pyarrow and Spark read the tree as a
partitioned dataset). A partition batch is split by event date (UTC), so every
record sits under its own date; the first offset of each piece is zero-padded, so
names sort in time order and a redelivered batch, which starts at the same
committed offset, lands on the same names.

Two writes of one name start at the same offset of the same partition and date, so
one holds the other's records plus more. A write never removes records another
member wrote: each object carries a stamp (consumer group, group generation, last
offset) in its metadata, writes are create-only, and an object that exists is
replaced, conditionally on its GCS generation, only by a write that holds more
records or comes from a later (or the same) group generation, i.e. from the
partition's current owner, which goes on writing from where its batch ends. A late
write of a member the group has replaced (frozen past its session timeout, or a
slow upload across a rebalance) thus finds a later generation's object and leaves
it as it is, or replaces it with more records: never fewer. See :func:`may_replace`.

Objects hold newline-delimited JSON, one line per record: the message value when it
already is the record's canonical one-line JSON (what the producer sends), else the
record re-serialised (a pretty-printed or duplicate-key value would break NDJSON
readers). So every object is valid NDJSON and replayable into Kafka. Parquet with
``file_format="parquet"``.
"""

from __future__ import annotations

import contextlib
import io
import logging
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal

import orjson

from pipeline_lib.clients.google import storage_client
from pipeline_lib.core.config import Settings
from pipeline_lib.records.batches import Batch, PartitionBatch, WriteResult
from pipeline_lib.records.routes import RAW_PREFIX, topic_folder
from pipeline_lib.sinks import Sink, SinkError, SinkUnavailable, reraise_refusal, with_retries

log = logging.getLogger(__name__)

UPLOAD_TIMEOUT_S = 30
RACING_WRITES = 5  # conditional writes lost to another writer before giving up


@dataclass(frozen=True)
class ObjectStamp:
    """Who wrote an object and how far it reaches, kept in the object's metadata."""

    group: str
    generation: int
    last_offset: int

    def metadata(self) -> dict[str, str]:
        return {
            "kafka-group": self.group,
            "kafka-generation": str(self.generation),
            "kafka-last-offset": str(self.last_offset),
        }

    @classmethod
    def read(cls, metadata: dict[str, str] | None) -> ObjectStamp | None:
        """The stamp in an object's metadata; None for objects written without one."""
        try:
            return cls(
                metadata["kafka-group"],  # type: ignore[index]
                int(metadata["kafka-generation"]),  # type: ignore[index]
                int(metadata["kafka-last-offset"]),  # type: ignore[index]
            )
        except (KeyError, TypeError, ValueError):
            return None


def may_replace(ours: ObjectStamp, existing: ObjectStamp | None) -> bool:
    """Whether a write stamped ``ours`` may replace an object of the same name.

    Both start at the same offset, so the shorter holds a prefix of the longer's
    records. Replace when ours holds more (nothing is lost), or when ours comes from
    the same group in the same or a later generation: the partition's owner, which
    writes on from where its batch ends, so the records past it land again. Keep the
    object when it holds the same records, or when a later generation wrote it:
    ours is then a late write of a replaced member, and its records are in it.
    Objects without a stamp (older versions of the pipeline) are replaced.
    """
    if existing is None or ours.last_offset > existing.last_offset:
        return True
    if ours.last_offset == existing.last_offset:
        return False
    return ours.group == existing.group and ours.generation >= existing.generation


def object_name(part: PartitionBatch, prefix: str, extension: str) -> str:
    """Name of a single-date piece: its first record's date and offset."""
    day = part.table.column("ts")[0].as_py().date().isoformat()
    return (
        f"{topic_folder(part.topic, prefix)}date={day}/partition={part.partition}/"
        f"{part.offsets[0]:020d}.{extension}"
    )


_MICROS_PER_DAY = 86_400_000_000


def split_by_date(part: PartitionBatch) -> list[PartitionBatch]:
    """The records of ``part`` grouped by event date (UTC), in offset order per group
    (one group, the batch itself, in the usual case: computed on the ``ts`` column)."""
    import numpy as np
    import pyarrow as pa

    micros = part.table.column("ts").cast(pa.int64()).to_numpy()
    days = np.floor_divide(micros, _MICROS_PER_DAY)
    if len(days) == 0 or (days == days[0]).all():
        return [part]
    _, first = np.unique(days, return_index=True)
    return [part.take(np.flatnonzero(days == days[i]).tolist()) for i in sorted(first)]


def ndjson_bytes(part: PartitionBatch) -> bytes:
    """One JSON line per record (``part.lines``): the record's canonical JSON, the
    message value itself when it already is that (what our producer sends), or the
    message as sent, on one line, when it carries fields of a newer contract."""
    return b"\n".join(part.lines) + b"\n"


def parquet_bytes(part: PartitionBatch) -> bytes:
    """The partition batch as a Parquet file: columns of the record's schema, and
    ``extra`` (the fields of a newer contract as JSON) when some record has them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = part.table
    if part.extras:
        extra = [orjson.dumps(e).decode() if e else None for e in part.extras]
        table = table.append_column("extra", pa.array(extra, type=pa.string()))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


class GcsSink(Sink):
    name = "gcs"

    def __init__(
        self,
        settings: Settings,
        prefix: str = RAW_PREFIX,
        file_format: Literal["ndjson", "parquet"] = "ndjson",
        parallel_uploads: int = 4,
    ) -> None:
        if file_format not in {"ndjson", "parquet"}:
            raise SinkError("file_format must be 'ndjson' or 'parquet'")
        self.settings = settings
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

    def _upload(self, part: PartitionBatch, group: str, generation: int) -> str:
        if self.file_format == "parquet":
            data, extension, content_type = parquet_bytes(part), "parquet", "application/parquet"
        else:
            data, extension, content_type = (
                ndjson_bytes(part),
                "ndjson",
                "application/x-ndjson",
            )
        name = object_name(part, self.prefix, extension)
        stamp = ObjectStamp(group, generation, part.offsets[-1])
        try:
            self._put(name, data, content_type, stamp)
        except Exception as error:
            reraise_refusal(
                error,
                f"GCS refused gs://{self.settings.gcs_bucket}/{name}",
                "Check the bucket exists (`python -m pipeline_lib setup`) and your permissions.",
            )
        return f"gs://{self.settings.gcs_bucket}/{name}"

    def _put(self, name: str, data: bytes, content_type: str, stamp: ObjectStamp) -> None:
        """Create the object, or replace the one there if :func:`may_replace` allows.

        Every write is conditional on the object's GCS generation (0: must not exist),
        so a writer that races another decides again on what is there now.
        """
        from google.api_core.exceptions import PreconditionFailed

        where = f"gs://{self.settings.gcs_bucket}/{name}"
        expected = 0
        for _ in range(RACING_WRITES):
            blob = self.bucket.blob(name)
            blob.metadata = stamp.metadata()
            try:
                with_retries(
                    lambda blob=blob, expected=expected: blob.upload_from_string(
                        data,
                        content_type=content_type,
                        timeout=UPLOAD_TIMEOUT_S,
                        retry=None,
                        if_generation_match=expected,
                    ),
                    f"uploading {where}",
                )
                return
            except PreconditionFailed:
                existing = with_retries(
                    lambda: self.bucket.get_blob(name, timeout=UPLOAD_TIMEOUT_S, retry=None),
                    f"reading {where}",
                )
            if existing is None:  # deleted meanwhile
                expected = 0
            elif may_replace(stamp, ObjectStamp.read(existing.metadata)):
                expected = existing.generation
            else:
                log.info("%s already holds these records (stamp %s); kept", where, stamp)
                return
        raise SinkUnavailable(
            f"{where}: {RACING_WRITES} conditional writes lost to other writers in a row"
        )

    def write(self, batch: Batch) -> WriteResult:
        parts = [piece for p in batch.parts if len(p) for piece in split_by_date(p)]
        if not parts:
            return WriteResult(self.name, 0)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallel_uploads, thread_name_prefix="gcs")
        uploads = [self._pool.submit(self._upload, p, batch.group, batch.generation) for p in parts]
        # Every upload ends before write() does, even when one fails: an upload left
        # running could land after the batch is written again (see Committer.settle).
        wait(uploads)
        locations = [upload.result() for upload in uploads]  # raises the first failure
        return WriteResult(self.name, sum(len(p) for p in parts), locations)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
