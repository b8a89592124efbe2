"""A batch as the table's rows: one Arrow table (load jobs' Parquet, the Storage Write
API's record batches) or NDJSON lines (the path that isolates refused rows).

Both writers send the same columns: the record's fields, where each row came from
(Kafka topic, partition, offset), when the batch was closed (``ingested_at``), and
the fields of a newer contract, in their added columns or as JSON in ``extra``.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeline_lib.records.batches import Batch
from pipeline_lib.records.columns import record_schema
from pipeline_lib.records.schema import LANDING_FIELDS
from pipeline_lib.records.streams import TICKS, Stream
from pipeline_lib.sinks.bigquery import evolution
from pipeline_lib.sinks.bigquery.type_mapper import TYPES

# Text columns with few distinct values, dictionary-encoded in the Parquet of a load.
REPEATING_COLUMNS = frozenset({"symbol", "source", "sentiment_label", "publisher", "kafka_topic"})


def arrow_schema(stream: Stream = TICKS) -> Any:
    """The table's columns as an Arrow schema (types from the one table, schema.KINDS)."""
    return record_schema((*stream.fields, *LANDING_FIELDS))


def row_bytes(
    record: Any,
    topic: str,
    partition: int,
    offset: int,
    ingested_at: str,
    extras: dict[str, Any] | None = None,
    added: dict[str, str] | None = None,
) -> bytes:
    """One NDJSON row of the table (the fallback path that isolates refused rows):
    with the record's fields of a newer contract in their ``added`` columns or
    ``extra``."""
    row = record.to_dict()
    row["ingested_at"] = ingested_at
    row["kafka_topic"] = topic
    row["kafka_partition"] = partition
    row["kafka_offset"] = offset
    into, rest = evolution.split(extras, added or {})
    row.update(into)
    row["extra"] = rest
    return orjson.dumps(row)


def batch_table(batch: Batch, stream: Stream = TICKS, added: tuple = ()) -> Any:
    """The whole batch as one Arrow table: the partitions' record columns joined (not
    copied), then where each row came from (per-batch values repeated), then the
    fields of a newer contract: in the ``added`` columns ((name, BigQuery type), in
    the table already) or as JSON in ``extra``."""
    import pyarrow as pa

    schema = arrow_schema(stream)
    for name, kind in added:
        schema = schema.append(pa.field(name, TYPES.to_arrow(kind)))
    parts = [p for p in batch.parts if len(p)]
    tables = [chunk for p in parts for chunk in p.chunks]
    records = pa.concat_tables(tables) if tables else record_schema(stream.fields).empty_table()
    n = records.num_rows

    def repeated(values: list[tuple[Any, int]], kind: Any) -> Any:
        pieces = [pa.repeat(pa.scalar(v, type=kind), count) for v, count in values if count]
        return pa.concat_arrays(pieces) if pieces else pa.array([], type=kind)

    sizes = [(p, len(p)) for p in parts]
    landing = {
        "ingested_at": lambda kind: repeated([(batch.closed_at, n)], kind),
        "kafka_topic": lambda kind: repeated([(p.topic, c) for p, c in sizes], kind),
        "kafka_partition": lambda kind: repeated([(p.partition, c) for p, c in sizes], kind),
        "kafka_offset": lambda kind: pa.array([o for p in parts for o in p.offsets], type=kind),
        "extra": lambda kind: pa.nulls(n, type=kind),
    }
    if any(p.extras for p in parts):  # records of a newer contract: their fields
        columns = dict(added)
        split = [
            evolution.split(p.extras[i] if p.extras else None, columns)
            for p in parts
            for i in range(len(p))
        ]
        landing["extra"] = lambda kind: pa.array([rest for _, rest in split], type=kind)
        for name, _ in added:
            landing[name] = lambda kind, name=name: pa.array(
                [into.get(name) for into, _ in split], type=kind
            )
    else:
        for name, _ in added:
            landing[name] = lambda kind: pa.nulls(n, type=kind)
    arrays = [
        landing[f.name](f.type) if f.name in landing else records.column(f.name) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)
