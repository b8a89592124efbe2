"""The GCS sink on the emulator: a late write of a replaced member never shrinks an
object another member wrote; the partition's current owner may (it writes on)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from pipeline_lib.clients.google import storage_client
from pipeline_lib.records.batches import Batch
from pipeline_lib.records.streams import TICKS as TICK_STREAM
from pipeline_lib.sinks.gcs import GcsSink, ObjectStamp
from tests.helpers import simulated

TICKS = simulated(120, seed=81)


def batch(last: int, generation: int, group: str = "g") -> Batch:
    """Offsets 0..last of partition 0 as one batch of ``group`` in ``generation``."""
    part = TICK_STREAM.partition_batch("t", 0, TICKS[: last + 1])
    return Batch([part], datetime.now(UTC), group, generation)


def only_object(settings) -> tuple[list[str], ObjectStamp | None]:
    blobs = list(storage_client(settings).list_blobs(settings.gcs_bucket, prefix="raw/"))
    assert len(blobs) == 1, [b.name for b in blobs]
    lines = blobs[0].download_as_bytes().splitlines()
    return [orjson.loads(x)["event_id"] for x in lines], ObjectStamp.read(blobs[0].metadata)


def test_a_late_write_never_shrinks_what_a_later_generation_wrote(settings):
    sink = GcsSink(settings)
    sink.setup()
    try:
        sink.write(batch(99, generation=5))  # the owner in generation 5
        ids, stamp = only_object(settings)
        assert len(ids) == 100 and stamp == ObjectStamp("g", 5, 99)

        sink.write(batch(49, generation=4))  # a zombie of generation 4: fewer records
        ids, stamp = only_object(settings)
        assert len(ids) == 100 and stamp == ObjectStamp("g", 5, 99)

        sink.write(batch(29, generation=6))  # the owner of generation 6 writes on from 30
        ids, stamp = only_object(settings)
        assert len(ids) == 30 and stamp == ObjectStamp("g", 6, 29)

        sink.write(batch(79, generation=5))  # a late write holding more: replaces, adds
        ids, stamp = only_object(settings)
        assert ids == [t.event_id for t in TICKS[:80]] and stamp == ObjectStamp("g", 5, 79)

        sink.write(batch(39, generation=9, group="other"))  # another group: never shrinks
        ids, _ = only_object(settings)
        assert len(ids) == 80
    finally:
        sink.close()


def test_an_object_without_a_stamp_is_replaced(settings):
    sink = GcsSink(settings)
    sink.setup()
    try:
        (name,) = [loc.split("/", 3)[3] for loc in sink.write(batch(9, generation=1)).locations]
        sink.bucket.blob(name).upload_from_string(b'{"event_id": "old"}\n')
        sink.write(batch(4, generation=1))
        ids, stamp = only_object(settings)
        assert len(ids) == 5 and stamp == ObjectStamp("g", 1, 4)
    finally:
        sink.close()
