"""Each benchmark figure is a function ``(size) -> dict`` with its numbers and its goal.

The pipeline figures run on benchmark services of their own (``.pipeline-bench/``,
ports 39092/34443/39050), started through ``pipeline_lib.local`` and stopped at the
end if the benchmark started them; the cluster figures add a three-broker cluster
(``.pipeline-bench-cluster/``, ports 39192-39197) beside them. Comparisons are made
side by side in one run, because these machines are shared and noisy: ratios are the
figures that count.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline_lib.clients.kafka import java_security_properties, librdkafka_security
from pipeline_lib.core.config import BQ_WRITES, PROJECT_ROOT, VARIABLES, Settings
from pipeline_lib.home import load_settings
from pipeline_lib.records.routes import route
from pipeline_lib.records.schema import encode
from pipeline_lib.sources.csv_replay import CsvReplay
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig

SIZES = {"tiny": 0.01, "full": 1.0}
START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)

BENCH_CLUSTER_HOME = PROJECT_ROOT / ".pipeline-bench-cluster"
BENCH_SECURE_HOME = PROJECT_ROOT / ".pipeline-bench-secure"
BENCH_ENVIRONMENT = {
    "PIPELINE_TARGET": "local",
    "PIPELINE_HOME": str(PROJECT_ROOT / ".pipeline-bench"),
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:39092",
    "KAFKA_CONTROLLER_PORT": "39093",
    "STORAGE_EMULATOR_HOST": "http://127.0.0.1:34443",
    "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:39050",
    "BIGQUERY_EMULATOR_GRPC_PORT": "39060",
}


def _count(size: str, full: int, floor: int) -> int:
    return max(floor, int(full * SIZES[size]))


def _rate(iterable, count: int) -> float:
    started = time.perf_counter()
    consumed = sum(1 for _ in itertools.islice(iterable, count))
    return consumed / (time.perf_counter() - started)


def _ticks(n: int, seed: int = 1) -> list:
    return list(itertools.islice(MarketSimulator(SimulatorConfig(seed=seed, start=START)), n))


# --- services ---------------------------------------------------------------------


class BenchServices:
    """The benchmark's own local services (or given ones), and fresh names per figure."""

    def __init__(
        self,
        settings: Settings | None = None,
        cluster: Settings | None = None,
        secure: Settings | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k not in BENCH_ENVIRONMENT}
        self.settings = settings or load_settings({**env, **BENCH_ENVIRONMENT})
        self.started = False
        self._cluster = cluster
        self.cluster_started = False
        self._secure = secure
        self.secure_started = False

    def secure(self, label: str) -> Settings:
        """Fresh names on a broker in secure mode (``up --secure``: SASL_SSL, SCRAM,
        ACLs) beside the services, as the pipeline principal; started on first use."""
        from pipeline_lib import local
        from pipeline_lib.local import secure

        if self._secure is None:
            broker = self.settings.with_overrides(
                home=BENCH_SECURE_HOME,
                kafka_bootstrap_servers="127.0.0.1:39292",
                kafka_controller_port=39293,
                brokers=1,
            )
            running = all(n.running_pid() for n in local.kafka_nodes(broker))
            self._secure = secure.as_principal(broker, secure.PIPELINE)
            self.secure_started = not running  # stopped at the end even if `up` fails
            local.up(
                broker, notify=lambda m: print(m, file=sys.stderr), kafka_only=True, secure=True
            )
        return self._on(self._secure, label)

    def _on(self, kafka: Settings, label: str) -> Settings:
        """Fresh names of this run, on another Kafka than the services' own."""
        fresh = self.fresh(label)
        return kafka.with_overrides(
            topic=fresh.topic,
            dead_letter_topic=fresh.dead_letter_topic,
            news_topic=fresh.news_topic,
            news_dead_letter_topic=fresh.news_dead_letter_topic,
            consumer_group=fresh.consumer_group,
            gcs_bucket=fresh.gcs_bucket,
            bq_dataset=fresh.bq_dataset,
        )

    def cluster(self, label: str) -> Settings:
        """Fresh names on a three-broker cluster beside the services, started on first use."""
        from pipeline_lib import local

        if self._cluster is None:
            self._cluster = self.settings.with_overrides(
                home=BENCH_CLUSTER_HOME,
                kafka_bootstrap_servers="127.0.0.1:39192",
                kafka_controller_port=39193,
                brokers=3,
            )
            running = all(n.running_pid() for n in local.kafka_nodes(self._cluster))
            local.up(self._cluster, notify=lambda m: print(m, file=sys.stderr), kafka_only=True)
            self.cluster_started = not running
        return self._on(self._cluster, label)

    def __enter__(self) -> BenchServices:
        from pipeline_lib import local

        if not self.settings.is_local:
            return self
        already = all(s.running for s in local.status(self.settings))
        local.up(self.settings, notify=lambda m: print(m, file=sys.stderr))
        self.started = not already
        return self

    def __exit__(self, *exc: object) -> None:
        from pipeline_lib import local

        if self.cluster_started and self._cluster is not None:
            local.down(self._cluster, kafka_only=True)
        if self.secure_started and self._secure is not None:
            local.down(self._secure, kafka_only=True)
        if self.started:
            local.down(self.settings)

    def fresh(self, label: str, partitions: int = 3) -> Settings:
        suffix = f"{label}-{uuid.uuid4().hex[:6]}"
        return self.settings.with_overrides(
            topic=f"bench-{suffix}",
            dead_letter_topic=f"bench-{suffix}.dlq",
            news_topic=f"bench-{suffix}-news",
            news_dead_letter_topic=f"bench-{suffix}-news.dlq",
            consumer_group=f"bench-{suffix}",
            gcs_bucket=f"bench-{suffix}",
            bq_dataset=f"bench_{suffix.replace('-', '_')}",
            partitions=partitions,
        )


_services: BenchServices | None = None


def services() -> BenchServices:
    if _services is None:
        raise RuntimeError("pipeline figures run inside `with using_services():`")
    return _services


class using_services:
    """Start the benchmark services for the figures that need them (or use ``settings``)."""

    def __init__(
        self,
        settings: Settings | None = None,
        cluster: Settings | None = None,
        secure: Settings | None = None,
    ) -> None:
        self.settings = settings
        self.cluster = cluster
        self.secure = secure

    def __enter__(self) -> BenchServices:
        global _services
        _services = BenchServices(self.settings, self.cluster, self.secure).__enter__()
        return _services

    def __exit__(self, *exc: object) -> None:
        global _services
        if _services is not None:
            _services.__exit__(*exc)
        _services = None


def _python(args: list[str], settings: Settings) -> subprocess.Popen:
    env = {**os.environ, **settings.to_env()}
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _json_result(process: subprocess.Popen, timeout: float = 600) -> dict:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{process.args[1:4]} failed: {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


# --- figures ----------------------------------------------------------------------


def simulator_rate(size: str) -> dict:
    """Records per second the simulator yields on one core (goal: >= 200,000).

    Side by side: the same records also JSON-encoded (what the producer does next),
    and CSV replay (parse + validate every row of the sample).
    """
    n = _count(size, 1_000_000, 2_000)
    config = SimulatorConfig(seed=1, start=START)
    sim = _rate(MarketSimulator(config), n)
    sim_encoded = _rate(map(encode, MarketSimulator(config)), n)
    csv_rows = len(CsvReplay())
    csv = _rate(CsvReplay(), csv_rows)
    return {
        "name": "simulator_rate",
        "records": n,
        "simulator_records_per_s": round(sim),
        "simulator_plus_json_records_per_s": round(sim_encoded),
        "csv_replay_records_per_s": round(csv),
        "goal": ">= 200,000 records/s",
        "met": sim >= 200_000,
    }


# The bare consumer, in a process of its own like ours, timed the same way: from the
# poll that returned the first records; the same fetch settings as ours
# (pipeline_lib.clients), no decoding, no sinks.
BARE_CONSUMER_SCRIPT = """
import json, sys, time
from kafka import KafkaConsumer
from pipeline_lib.clients.kafka import kafka_security
from pipeline_lib import load_settings
n, topic, servers, group = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
bare = KafkaConsumer(
    topic,
    bootstrap_servers=servers,
    group_id=group,
    auto_offset_reset="earliest",
    enable_auto_commit=False,
    max_poll_records=5000,
    fetch_max_bytes=16 * 1024 * 1024,
    max_partition_fetch_bytes=4 * 1024 * 1024,
    **kafka_security(load_settings()),
)
seen, first, cpu = 0, None, 0.0
while seen < n:
    poll_started, cpu_before = time.monotonic(), time.process_time()
    batch = bare.poll(timeout_ms=1000)
    if batch and first is None:
        first, cpu = poll_started, cpu_before
    seen += sum(len(messages) for messages in batch.values())
print(json.dumps({"rate": seen / (time.monotonic() - first), "cpu_s": time.process_time() - cpu}))
bare.close()
"""

CONSUMER_SCRIPT = """
import json, resource, sys
import google.cloud.bigquery, google.cloud.storage, pyarrow.parquet  # startup, not per record
from pipeline_lib import load_settings
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.sinks.landing import landing_sinks
n = int(sys.argv[1]); flush = float(sys.argv[2])
bq_write = sys.argv[3] if len(sys.argv) > 3 else None  # BQ_WRITE's default: storage
rss = {}
def rss_mib(field="VmRSS:"):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
marks = [m for m in (100_000, 250_000, 500_000, 750_000, 1_000_000) if m <= n]
settings = load_settings()
consumer = SinkConsumer(
    settings,
    sinks=landing_sinks(settings, bq_write=bq_write),
    batch_size=10_000,
    flush_interval=flush,
)
def on_batch(batch):
    done = consumer.core.counts.landed
    while marks and done >= marks[0]:
        rss[marks.pop(0)] = round(rss_mib())
consumer.on_batch = on_batch
def cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
startup = cpu_s()  # interpreter, imports (the Google clients, pyarrow), set-up
report = consumer.run(max_records=n, until_idle=60)
out = report.to_dict()
# VmHWM, not ru_maxrss: Linux carries the parent's RSS at fork into the child's
# ru_maxrss (the bench process holds the ticks it produced: 1 GB for the backlog).
out["peak_rss_mib"] = rss_mib("VmHWM:")
out["startup_cpu_s"] = startup
out["run_cpu_s"] = cpu_s() - startup
out["rss_mib_at"] = rss
print(json.dumps(out))
"""


def _service_cpu(settings: Settings) -> dict[str, float]:
    """CPU seconds (user + system) each local service process has used so far."""
    from pipeline_lib import local

    ticks = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for service in local.status(settings):
        try:
            fields = Path(f"/proc/{service.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[service.name] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError, TypeError):
            cpu[service.name] = float("nan")
    return cpu


def _fill(settings: Settings, ticks: list) -> None:
    """Fill a topic fast (confluent-kafka when installed): only the reading is measured."""
    from pipeline_lib.clients.kafka import ensure_topic

    ensure_topic(settings)
    try:
        from confluent_kafka import Producer
    except ImportError:  # pragma: no cover - confluent-kafka comes with the dev extra
        from pipeline_lib.kafka_io.producer import produce

        produce(settings, ticks)
        return
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **librdkafka_security(settings),
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 20,
            "batch.size": 262144,
        }
    )
    for i, tick in enumerate(ticks):
        while True:
            try:
                producer.produce(settings.topic, value=encode(tick), key=tick.symbol.encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 5000 == 0:
            producer.poll(0)
    producer.flush(120)


def end_to_end(size: str) -> dict:
    """Figures 1, 2 and 6: end-to-end rate vs the per-message baseline and a bare consumer.

    1. producer and consumer processes run together; the rate is records committed in
       both sinks per second of consumer activity; the baseline (one object + one
       INSERT per message) runs on the same services. Goal: >= 500x the baseline.
    2. sink overhead: our consumer on an already-filled topic vs a bare kafka-python
       consumer on the same topic (no decoding, no sinks), in records per second and
       in CPU per record: the consumer's CPU from its first record to the end of its
       run (``active_cpu_seconds``: set-up, such as importing the Google clients, is a
       fixed cost, reported as ``consumer_startup_cpu_s``) over the bare consumer's
       CPU over its poll loop. Goals (issue 19): CPU ratio <= 2.0, rate ratio >= 0.5.
    6. peak memory (RSS) of the consumer process during 1.
    """

    from bench.baseline import run_baseline

    n = _count(size, 100_000, 2_000)
    baseline_n = _count(size, 200, 10)

    # 1. end to end, producer and consumer at the same time
    settings = services().fresh("e2e")
    from pipeline_lib.clients.kafka import ensure_topic

    ensure_topic(settings)
    consumer = _python(["-c", CONSUMER_SCRIPT, str(n), "1.0"], settings)
    producer = _python(
        ["-m", "pipeline_lib", "produce", "--max-records", str(n), "--seed", "3", "--quiet"],
        settings,
    )
    producer.communicate(timeout=600)
    e2e = _json_result(consumer)
    e2e_rate = e2e["consumed"] / e2e["active_seconds"]

    # the baseline on a topic with the same kind of data
    base_settings = services().fresh("baseline")
    from pipeline_lib.kafka_io.producer import produce

    produce(base_settings, _ticks(baseline_n + 10, seed=4))
    baseline = run_baseline(base_settings, baseline_n, group=f"{base_settings.topic}-old")

    # 2. bare consumer vs our sink consumer on the same filled topic
    filled = services().fresh("overhead")
    produce(filled, _ticks(n, seed=5))
    bare = _json_result(
        _python(
            [
                "-c",
                BARE_CONSUMER_SCRIPT,
                str(n),
                filled.topic,
                filled.kafka_bootstrap_servers,
                f"{filled.topic}-bare",
            ],
            filled,
        )
    )
    bare_rate, bare_cpu = bare["rate"], bare["cpu_s"]
    # Our consumer with each BigQuery writer, alternated on the same filled topic (new
    # groups and datasets each time), best of two each: run order and page-cache
    # warmth favour none. The default writer (the Storage Write API) gives the ratios.
    writers = list(BQ_WRITES)
    default = VARIABLES["BQ_WRITE"].default
    runs: dict[str, list[dict]] = {writer: [] for writer in writers}
    cpu_before: dict[str, float] = {}
    cpu_after: dict[str, float] = {}
    for round_ in range(2):
        for writer in writers if round_ == 0 else writers[::-1]:
            tag = f"{writer.replace('-', '')[:12]}{round_}"
            tagged = filled.with_overrides(
                consumer_group=f"{filled.topic}-{tag}",
                bq_dataset=f"{filled.bq_dataset}_{tag}",
                gcs_bucket=f"{filled.gcs_bucket}-{tag}",
            )
            before = _service_cpu(filled)
            result = _json_result(_python(["-c", CONSUMER_SCRIPT, str(n), "1.0", writer], tagged))
            after = _service_cpu(filled)
            result["rate"] = result["consumed"] / result["active_seconds"]
            if writer == default and (not runs[writer] or result["rate"] > runs[writer][0]["rate"]):
                cpu_before, cpu_after = before, after
            runs[writer].append(result)
            runs[writer].sort(key=lambda r: -r["rate"])
    sink = runs[default][0]
    sink_rate = sink["rate"]
    per_100k = 100_000 / n
    cpu_per_100k = {
        "bare_consumer": round(bare_cpu * per_100k, 2),
        "consumer": round(sink["active_cpu_seconds"] * per_100k, 2),
        "consumer_with_setup": round(sink["run_cpu_s"] * per_100k, 2),
    }
    for name in cpu_before:
        cpu_per_100k[name] = round((cpu_after[name] - cpu_before[name]) * per_100k, 2)
    stages_per_100k = {k: round(v * per_100k, 2) for k, v in sink["stage_seconds"].items()}
    by_writer = {
        writer: {
            "records_per_s": round(runs[writer][0]["rate"]),
            "consumer_cpu_s_per_100k": round(runs[writer][0]["active_cpu_seconds"] * per_100k, 2),
            "bigquery_stage_s_per_100k": round(
                runs[writer][0]["stage_seconds"].get("sink:bigquery", 0.0) * per_100k, 2
            ),
        }
        for writer in writers
    }
    # Where the gap comes from: the same consumer with no sinks (decode + batching only).
    from pipeline_lib.kafka_io.consumer import SinkConsumer

    no_sinks = filled.with_overrides(consumer_group=f"{filled.topic}-nosinks")
    decode_only = SinkConsumer(no_sinks, sinks=[], batch_size=10_000).run(max_records=n)

    speedup = e2e_rate / baseline["records_per_s"]
    overhead = sink_rate / bare_rate
    cpu_ratio = sink["active_cpu_seconds"] / bare_cpu
    return {
        "name": "end_to_end",
        "records": n,
        "e2e_records_per_s": round(e2e_rate),
        "baseline_records_per_s": round(baseline["records_per_s"], 1),
        "speedup_vs_baseline": round(speedup),
        "bare_consumer_records_per_s": round(bare_rate),
        "sink_consumer_records_per_s": round(sink_rate),
        "consumer_without_sinks_records_per_s": round(decode_only.active_rate),
        "sink_overhead_ratio": round(overhead, 2),
        "cpu_ratio_to_bare": round(cpu_ratio, 2),
        "bigquery_writer": default,
        "by_bigquery_writer": by_writer,
        "cpu_s_per_100k_records": cpu_per_100k,
        "stage_s_per_100k_records": stages_per_100k,
        "consumer_startup_cpu_s": round(
            sink["startup_cpu_s"] + sink["run_cpu_s"] - sink["active_cpu_seconds"], 2
        ),
        "consumer_peak_rss_mib": round(e2e["peak_rss_mib"]),
        "goal": "speedup >= 500x; sink overhead ratio >= 0.5; CPU per record <= 2.0x bare",
        "met": speedup >= 500 and overhead >= 0.5 and cpu_ratio <= 2.0,
    }


def _java_producer_perf(settings: Settings, payloads: list[bytes]) -> float:
    from pipeline_lib.local.kafka import KafkaBroker

    libs = KafkaBroker(settings).libs_dir
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as handle:
        handle.write(b"\n".join(payloads))
        payload_file = handle.name
    # Credentials in a private file, not on a command line anyone may read.
    with tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False) as handle:
        handle.write("".join(f"{k}={v}\n" for k, v in java_security_properties(settings).items()))
        security_file = handle.name
    try:
        result = subprocess.run(
            [
                "java",
                "-Xmx512m",
                "-cp",
                f"{libs}/*",
                "org.apache.kafka.tools.ProducerPerformance",
                "--topic",
                settings.topic,
                "--num-records",
                str(len(payloads)),
                "--payload-file",
                payload_file,
                "--throughput",
                "-1",
                "--producer-props",
                f"bootstrap.servers={settings.kafka_bootstrap_servers}",
                "acks=all",
                "enable.idempotence=true",
                "compression.type=lz4",
                "linger.ms=20",
                "batch.size=262144",
                "--producer.config",
                security_file,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        Path(payload_file).unlink(missing_ok=True)
        Path(security_file).unlink(missing_ok=True)
    last = [line for line in result.stdout.splitlines() if "records/sec" in line]
    if result.returncode != 0 or not last:
        raise RuntimeError(f"ProducerPerformance failed: {result.stderr[-1500:]}")
    return float(last[-1].split("records sent,")[1].split("records/sec")[0].strip())


def _confluent_rate(settings: Settings, ticks: list, payloads: list[bytes]) -> float | None:
    try:
        from confluent_kafka import Producer
    except ImportError:
        return None
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **librdkafka_security(settings),
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 20,
            "batch.size": 262144,
        }
    )
    started = time.perf_counter()
    for i, (tick, value) in enumerate(zip(ticks, payloads, strict=True)):
        while True:
            try:
                producer.produce(settings.topic, value=value, key=tick.symbol.encode())
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(60)
    return len(ticks) / (time.perf_counter() - started)


def backlog(size: str) -> dict:
    """Figure 7: consume a filled backlog (1M records at full size) into both sinks.

    Records per second and the consumer's resident memory at 100k, 250k, 500k, 750k
    and 1M records landed: memory must stay flat (batches are bounded, nothing is
    kept after a commit).
    """
    n = _count(size, 1_000_000, 3_000)
    settings = services().fresh("backlog")
    _fill(settings, _ticks(n, seed=8))
    result = _json_result(_python(["-c", CONSUMER_SCRIPT, str(n), "1.0"], settings), 1800)
    rate = result["consumed"] / result["active_seconds"]
    marks = {int(k): v for k, v in result["rss_mib_at"].items()}
    growth = (max(marks.values()) - min(marks.values())) if len(marks) > 1 else 0
    return {
        "name": "backlog",
        "records": n,
        "records_per_s": round(rate),
        "rss_mib_at_records": marks,
        "rss_growth_mib": growth,
        "peak_rss_mib": round(result["peak_rss_mib"]),
        "goal": "RSS flat from 100k to 1M (growth < 50 MiB)",
        "met": result["written"] == n and (n < 200_000 or growth < 50),
    }


def producer_ceiling(size: str) -> dict:
    """Figure 3: our producer vs Kafka's Java ProducerPerformance and confluent-kafka.

    Same broker, same settings (acks=all, idempotence, lz4, 20 ms linger, 256 KB
    batches) and the same payloads: our JSON ticks, also fed to the Java tool.
    """
    from pipeline_lib.clients.kafka import ensure_topic
    from pipeline_lib.kafka_io.producer import produce

    n = _count(size, 100_000, 2_000)
    ticks = _ticks(n, seed=6)
    payloads = [encode(t) for t in ticks]
    settings = services().fresh("producer")
    ensure_topic(settings)
    ours = produce(settings, ticks).rate
    java = _java_producer_perf(settings, payloads)
    confluent = _confluent_rate(settings, ticks, payloads)
    return {
        "name": "producer_ceiling",
        "records": n,
        "record_bytes": round(statistics.mean(len(p) for p in payloads)),
        "pipeline_lib_records_per_s": round(ours),
        "java_producer_perf_records_per_s": round(java),
        "confluent_kafka_records_per_s": round(confluent) if confluent else "not installed",
        "ratio_to_java": round(ours / java, 3),
        "ratio_to_confluent": round(ours / confluent, 3) if confluent else None,
        "goal": "measured, no goal: what the choice of kafka-python costs",
        "met": True,
    }


def _freshness_round(
    seconds: float, rate: int, bq_write: str | None = None, warmup_s: float = 0.0
) -> tuple[float, float, int, float, float]:
    """One round of :func:`freshness`: (p50, p99, rows counted, slowest row of the
    warm-up, the BigQuery sink's mean milliseconds per batch), the consumer writing
    BigQuery as ``bq_write`` says (default: BQ_WRITE's default). Rows produced in
    the first ``warmup_s`` of the round are not counted in the percentiles (the first
    batch carries the producer's and the consumer's cold start, common to every
    writer); their slowest is returned on its own."""
    from google.cloud import bigquery

    from pipeline_lib.clients.google import bigquery_client
    from pipeline_lib.clients.kafka import ensure_topic
    from pipeline_lib.sinks.bigquery import BigQuerySink

    settings = services().fresh("fresh")
    ensure_topic(settings)
    BigQuerySink(settings).setup()
    client = bigquery_client(settings)
    table = route(settings).table_sql
    sql = (
        f"SELECT produced_at, ingested_at FROM {table} "  # noqa: S608
        "WHERE ingested_at > @since"
    )
    consumer = _python(
        [
            "-m",
            "pipeline_lib",
            "consume",
            "--stream",
            "ticks",
            "--json",
            "--quiet",
            "--flush-interval",
            "0.25",
            "--until-idle",
            "5",
            *(["--bq-write", bq_write] if bq_write else []),
        ],
        settings,
    )
    time.sleep(3)  # let the consumer join before the clock starts
    producer = _python(
        [
            "-m",
            "pipeline_lib",
            "produce",
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--seed",
            "7",
            "--quiet",
        ],
        settings,
    )
    stamped: list[tuple[datetime, float]] = []  # (produced_at, latency)
    since = datetime(2000, 1, 1, tzinfo=UTC)
    quiet_since = None
    while True:
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("since", "TIMESTAMP", since)]
        )
        rows = list(client.query(sql, job_config=config).result())
        seen_at = datetime.now(UTC)
        for row in rows:
            stamped.append((row.produced_at, (seen_at - row.produced_at).total_seconds()))
            since = max(since, row.ingested_at)
        finished = producer.poll() is not None
        if rows:
            quiet_since = None
        elif finished:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 3:
                break
        time.sleep(0.05)
    consumer.terminate()
    out, _ = consumer.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    write_ms = 1000 * report["stage_seconds"]["sink:bigquery"] / max(1, report["batches"])
    first = min(produced for produced, _ in stamped)
    warm = timedelta(seconds=warmup_s)
    latencies = sorted(latency for produced, latency in stamped if produced - first >= warm)
    cold = max((latency for produced, latency in stamped if produced - first < warm), default=0.0)
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return p50, p99, len(latencies), cold, write_ms


def freshness(size: str) -> dict:
    """Figure 4: at a steady 1,000 ticks/s, tick creation → a BigQuery query returns it.

    Producer (``--rate``) and consumer run as processes; this process polls BigQuery
    for rows ingested since its last poll and stamps each row when the query returns.
    Three rounds at full size (one run swings by ±0.15 s on a shared 2-core machine):
    each round's p50 and p99, and the goal judged on the median p99.
    """
    seconds = 30.0 if size == "full" else 3.0
    rate = 1000 if size == "full" else 200
    rounds = [_freshness_round(seconds, rate) for _ in range(3 if size == "full" else 1)]
    p99s = [p99 for _, p99, *_ in rounds]
    median_p99 = statistics.median(p99s)
    return {
        "name": "freshness",
        "ticks_per_s": rate,
        "seconds": seconds,
        "rounds": len(rounds),
        "rows_seen": [rows for _, _, rows, *_ in rounds],
        "p50_s": [round(p50, 3) for p50, *_ in rounds],
        "p99_s": [round(p99, 3) for p99 in p99s],
        "median_p99_s": round(median_p99, 3),
        "goal": "p99 < 1 s (median of the rounds)",
        "met": median_p99 < 1.0,
    }


def storage_write(size: str) -> dict:
    """Issue 20: the BigQuery writers side by side at a steady 1,000 ticks/s, and what a
    day of it asks of real BigQuery's quotas.

    Freshness (tick creation to a query returning it, as in :func:`freshness`) for
    each writer in steady state: the first 2 s of each round are not counted (their
    first batch carries the producer's and the consumer's cold start, 0.6-0.8 s for
    every writer, and alone decided a 15 s round's p99); their slowest row is
    reported as ``warmup_slowest_s``. Each writer's own time per batch, from the
    consumer's report, is ``write_ms_per_batch``: the part of freshness a writer
    decides, less noisy than a p99. Rounds alternated so that the machine's moods
    hit all alike: the
    Storage Write API exactly once (the default), its default stream (at least once)
    and a load job per batch. Throughput on a filled topic per writer is in
    ``end_to_end`` (``by_bigquery_writer``). The quota arithmetic takes a batch a
    second per consumer (the default flush) and the bytes per row of the Arrow
    requests the sink sends, measured on simulated ticks.
    """
    from pipeline_lib.records.streams import TICKS
    from pipeline_lib.sinks.bigquery import batch_table

    warmup = 2.0 if size == "full" else 0.5
    seconds = 30.0 + warmup if size == "full" else 3.0
    rate = 1000 if size == "full" else 200
    rounds = 3 if size == "full" else 1
    writers = list(BQ_WRITES)
    seen: dict[str, list[tuple[float, float, int, float, float]]] = {w: [] for w in writers}
    for round_ in range(rounds):
        for writer in writers if round_ % 2 == 0 else writers[::-1]:
            seen[writer].append(_freshness_round(seconds, rate, writer, warmup_s=warmup))
    by_writer = {
        writer: {
            "p50_s": [round(p50, 3) for p50, *_ in runs],
            "p99_s": [round(p99, 3) for _, p99, *_ in runs],
            "median_p99_s": round(statistics.median(p99 for _, p99, *_ in runs), 3),
            "rows_counted": [rows for _, _, rows, *_ in runs],
            "warmup_slowest_s": [round(cold, 3) for *_, cold, _ in runs],
            "write_ms_per_batch": [round(ms, 1) for *_, ms in runs],
        }
        for writer, runs in seen.items()
    }
    # Bytes per row as the Write API receives them: an Arrow record batch of ticks.
    from pipeline_lib.records.batches import Batch

    ticks = _ticks(10_000, seed=9)
    part = TICKS.partition_batch("t", 0, ticks, list(range(len(ticks))))
    table = batch_table(Batch([part], datetime.now(UTC), "g", 1), TICKS)
    request_bytes = sum(b.serialize().size for b in table.to_batches(max_chunksize=5_000))
    bytes_per_row = request_bytes / table.num_rows
    per_day = 86_400
    gib_per_month = bytes_per_row * 1000 * per_day * 30 / 2**30
    storage = by_writer["storage"]["median_p99_s"]
    load = by_writer["load"]["median_p99_s"]
    return {
        "name": "storage_write",
        "ticks_per_s": rate,
        "seconds_per_round": seconds,
        "warmup_s_not_counted": warmup,
        "rounds_per_writer": rounds,
        "freshness_by_writer": by_writer,
        "storage_over_load_p99": round(storage / load, 2),
        "quota_at_1000_ticks_per_s": {
            "load_jobs_per_table_per_day_at_1s_flush_one_consumer": per_day,
            "load_job_quota_per_table_per_day": 1500,
            "flush_interval_s_for_load_jobs_to_fit_the_quota": round(per_day / 1500, 1),
            "write_api_appends_per_day_one_consumer": per_day,
            "write_streams_created_per_day": "one per consumer start or group rebalance",
            "arrow_bytes_per_row": round(bytes_per_row, 1),
            "ingested_gib_per_30_days": round(gib_per_month, 1),
            "free_gib_per_month_on_googles_price_list": 2048,  # a documented figure
        },
        "goal": "storage p99 <= load jobs' p99 and < 0.5 s (median of the rounds)",
        "met": storage <= load and storage < 0.5,
    }


def notebook_flow(size: str) -> dict:
    """Figure 5: wall time of the headless notebook flow (the main command), caches warm."""
    from pipeline_lib.cli.flow import run_flow

    records = 20_000 if size == "full" else 300
    settings = services().fresh("flow")
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = run_flow(settings, records=records, output_dir=Path(folder))
        wall = time.perf_counter() - started
    return {
        "name": "notebook_flow",
        "records": records,
        "wall_s": round(wall, 1),
        "per_notebook_s": {k: round(v, 1) for k, v in result.seconds.items()},
        "goal": "< 120 s",
        "met": wall < 120,
    }


def replication_cost(size: str) -> dict:
    """Figure 8: producer throughput on 3 brokers with RF 3 (acks from 2+ copies) ÷ on
    1 broker with RF 1: the price of surviving a broker failure. Alternated, 2 rounds."""
    from pipeline_lib.clients.kafka import ensure_topic
    from pipeline_lib.kafka_io.producer import produce

    n = _count(size, 100_000, 2_000)
    ticks = _ticks(n, seed=8)
    single = services().fresh("rf1")
    replicated = services().cluster("rf3")
    ensure_topic(single)
    ensure_topic(replicated)
    rates: dict[str, list[float]] = {"rf1": [], "rf3": []}
    for _ in range(2):
        rates["rf1"].append(produce(single, ticks, ensure=False).rate)
        rates["rf3"].append(produce(replicated, ticks, ensure=False).rate)
    rf1, rf3 = statistics.median(rates["rf1"]), statistics.median(rates["rf3"])
    return {
        "name": "replication_cost",
        "records": n,
        "one_broker_rf1_records_per_s": round(rf1),
        "three_brokers_rf3_records_per_s": round(rf3),
        "ratio_rf3_to_rf1": round(rf3 / rf1, 3),
        "goal": "measured, no goal: what replication costs the producer (acks=all)",
        "met": True,
    }


def failover(size: str) -> dict:
    """Figure 9: SIGKILL the leader of partition 0 while sending to it at a steady rate;
    seconds until the first record sent after the kill is acknowledged. Median of 3
    (1 at tiny size); the broker is restarted and back in sync between rounds."""
    from pipeline_lib import local
    from pipeline_lib.clients.kafka import ensure_topic, kafka_producer
    from pipeline_lib.ops import cluster

    rounds = 3 if size == "full" else 1
    settings = services().cluster("failover")
    ensure_topic(settings)
    payload = encode(_ticks(1, seed=9)[0])
    seconds: list[float] = []
    victims: list[dict] = []
    for _ in range(rounds):
        cluster.wait_for(settings, cluster.fully_replicated, "all replicas in sync", 90)
        state = cluster.describe_cluster(settings)
        victim = state.partition(settings.topic, 0).leader
        victims.append({"broker": victim, "was_quorum_leader": victim == state.quorum_leader})
        producer = kafka_producer(settings)
        acknowledged: list[tuple[float, float]] = []  # (sent, acknowledged) monotonic
        killed_at = None
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                sent = time.monotonic()
                producer.send(settings.topic, value=payload, partition=0).add_callback(
                    lambda _m, sent=sent, log=acknowledged: log.append((sent, time.monotonic()))
                )
                if killed_at is None and sent > deadline - 57:  # 3 s of steady sending
                    local.stop_broker(settings, victim, kill=True)
                    killed_at = time.monotonic()
                if killed_at and any(s > killed_at for s, _ in acknowledged):
                    break
                time.sleep(0.005)
            after = [a for s, a in acknowledged if killed_at and s > killed_at]
            if not after:
                raise RuntimeError("no record sent after the kill was acknowledged within 60 s")
            seconds.append(min(after) - killed_at)
        finally:
            producer.close(timeout=10)
            if not local.KafkaBroker(settings, node_id=victim).running_pid():
                local.start_broker(settings, victim)
    cluster.wait_for(settings, cluster.fully_replicated, "all replicas in sync", 90)
    return {
        "name": "failover",
        "rounds": rounds,
        "seconds": [round(s, 2) for s in seconds],
        "killed": victims,
        "median_s": round(statistics.median(seconds), 2),
        "goal": "measured, no goal: broker.session.timeout.ms is 6 s on the local cluster",
        "met": True,
    }


def sentiment_rate(size: str) -> dict:
    """Headlines scored per second on one core (VADER + the finance lexicon), side by
    side with the news simulator's stories per second (scoring included)."""
    from pipeline_lib.records.sentiment import score
    from pipeline_lib.sources.news_simulator import BACKGROUND, NEGATIVE, POSITIVE, NewsSimulator

    n = _count(size, 50_000, 500)
    names = ("Apple", "Johnson & Johnson", "Exxon Mobil", "Nvidia")
    headlines = [t.format(co=c) for t in (*POSITIVE, *NEGATIVE, *BACKGROUND) for c in names]
    score(headlines[0])  # load the lexicon before the clock starts
    started = time.perf_counter()
    for i in range(n):
        score(headlines[i % len(headlines)])
    scored_per_s = n / (time.perf_counter() - started)
    symbols = ["AAPL", "MSFT", "GOOGL", "META", "NVDA", "AMZN", "KO", "JPM", "XOM", "JNJ"]
    stories = _rate(NewsSimulator(symbols, 1, START), max(200, n // 10))
    return {
        "name": "sentiment_rate",
        "headlines": n,
        "headlines_scored_per_s": round(scored_per_s),
        "simulated_stories_per_s": round(stories),
        "goal": ">= 5,000 headlines/s on one core (AlphaVantage sends at most 1,000 per call)",
        "met": scored_per_s >= 5_000,
    }


def two_streams(size: str) -> dict:
    """End to end with both streams: ticks and the news among them produced in one run,
    then `consume` (one member per stream) lands both; records/s of each phase, beside
    the same ticks alone on the same services (alternated, best of two)."""
    from pipeline_lib.kafka_io.producer import produce
    from pipeline_lib.sources import source_from_parameters, stream

    n = _count(size, 100_000, 2_000)
    base = services().fresh("streams")
    records = list(
        stream(source_from_parameters(base, stream="both", seed=4, start=START), max_records=n)
    )
    news = sum(1 for r in records if not hasattr(r, "event_id"))
    ticks_only = [r for r in records if hasattr(r, "event_id")]
    runs: dict[str, list[float]] = {"both": [], "ticks": []}
    produced: dict[str, list[float]] = {"both": [], "ticks": []}
    for _ in range(2):
        for label, batch, choice in (("both", records, "both"), ("ticks", ticks_only, "ticks")):
            settings = services().fresh(f"streams-{label}")
            produced[label].append(produce(settings, batch).rate)
            started = time.perf_counter()
            reports = _json_result(
                _python(
                    [
                        "-m",
                        "pipeline_lib",
                        "consume",
                        "--stream",
                        choice,
                        "--until-idle",
                        "2",
                        "--json",
                        "--quiet",
                        "--batch-size",
                        "10000",
                    ],
                    settings,
                )
            )
            wall = time.perf_counter() - started
            reports = reports if choice == "both" else {"ticks": reports}
            landed = sum(r["written"] for r in reports.values())
            if landed != len(batch):
                raise RuntimeError(f"{label}: landed {landed} of {len(batch)}")
            active = max(r["active_seconds"] for r in reports.values()) or wall
            runs[label].append(landed / active)
    both, alone = max(runs["both"]), max(runs["ticks"])
    return {
        "name": "two_streams",
        "ticks": n,
        "news": news,
        "produce_both_records_per_s": round(max(produced["both"])),
        "produce_ticks_only_records_per_s": round(max(produced["ticks"])),
        "consume_both_records_per_s": round(both),
        "consume_ticks_only_records_per_s": round(alone),
        "ratio_both_to_ticks_only": round(both / alone, 3),
        "goal": "measured, no goal: what a second stream costs (a second group member, "
        "topic and table)",
        "met": True,
    }


def _kafka_read_rate(settings: Settings, n: int) -> float:
    """Records per second the sink consumer reads and decodes from Kafka, no sinks."""
    from pipeline_lib.kafka_io.consumer import SinkConsumer

    report = SinkConsumer(settings, sinks=[], create_topics=False).run(max_records=n, until_idle=60)
    if report.consumed < n:
        raise RuntimeError(f"read {report.consumed} of {n} records: {report.stopped_because}")
    return report.consumed / max(report.active_seconds or report.seconds, 1e-9)


def secure_kafka(size: str) -> dict:
    """Figure: what TLS and SCRAM logins cost. Our producer and our consumer (reading
    and decoding, no sinks) on the plaintext broker and on a broker in secure mode
    (SASL_SSL, SCRAM-SHA-512, ACLs), alternated, 2 rounds each, same ticks."""
    from pipeline_lib.clients.kafka import ensure_topic
    from pipeline_lib.kafka_io.producer import produce

    n = _count(size, 100_000, 2_000)
    ticks = _ticks(n, seed=12)
    rates: dict[str, dict[str, list[float]]] = {
        k: {"produce": [], "consume": []} for k in ("plaintext", "sasl_ssl")
    }
    for round_ in range(2):
        for kind in ("plaintext", "sasl_ssl"):
            label = f"{kind}-{round_}"
            settings = services().secure(label) if kind == "sasl_ssl" else services().fresh(label)
            ensure_topic(settings)
            produced = produce(settings, ticks, ensure=False)
            if produced.delivered != n:
                raise RuntimeError(f"{kind}: {produced.summary()}")
            rates[kind]["produce"].append(produced.rate)
            rates[kind]["consume"].append(_kafka_read_rate(settings, n))
    median = {k: {op: statistics.median(v) for op, v in ops.items()} for k, ops in rates.items()}
    return {
        "name": "secure_kafka",
        "records": n,
        "produce_records_per_s": {k: round(v["produce"]) for k, v in median.items()},
        "consume_records_per_s": {k: round(v["consume"]) for k, v in median.items()},
        "produce_ratio_secure_to_plaintext": round(
            median["sasl_ssl"]["produce"] / median["plaintext"]["produce"], 3
        ),
        "consume_ratio_secure_to_plaintext": round(
            median["sasl_ssl"]["consume"] / median["plaintext"]["consume"], 3
        ),
        "goal": "measured, no goal: what TLS and SCRAM cost the producer and the consumer",
        "met": True,
    }


def _land(settings: Settings, ticks: Any, count: int, first: int) -> str:
    """Land the next ``count`` ticks of ``ticks`` (an iterator of one run) through the
    load-job sink (which keeps the run summary), 250,000 a batch, from Kafka offset
    ``first``; returns the run's tag."""
    from pipeline_lib.records.batches import Batch
    from pipeline_lib.records.streams import TICKS
    from pipeline_lib.sinks.bigquery import BigQuerySink

    sink = BigQuerySink(settings)
    tag, offset = "", first
    while offset < first + count:
        chunk = list(itertools.islice(ticks, min(250_000, first + count - offset)))
        tag = chunk[0].event_id.split(":")[0]
        part = TICKS.partition_batch("t", 0, chunk, list(range(offset, offset + len(chunk))))
        sink.write(Batch([part], datetime.now(UTC), "bench", 1))
        offset += len(chunk)
    sink.close()
    return tag


def _rows_touched(settings: Settings, symbol: str, since: datetime) -> int:
    """Rows real BigQuery would read for one symbol from ``since``: the day partitions
    from that day on, the symbol's clustered blocks (counted as its rows)."""
    from pipeline_lib.analysis.queries import _query

    sql = (
        f"SELECT COUNT(*) AS n FROM {route(settings).table_sql} "  # noqa: S608
        "WHERE symbol = @symbol AND DATE(ts) >= DATE(@since)"
    )
    return int(_query(settings, sql, symbol=symbol, since=since)["n"].iloc[0])


def read_cost(size: str) -> dict:
    """Issue 22: what one refresh of the live chart, and notebook 04's queries, cost as
    the table grows, the shown run, window and symbol the same.

    Two tables side by side in one run: the latest run (50,000 ticks, a 60-minute
    window of one symbol = 3,600 ticks plotted) on top of an older run, 100,000 rows
    in all and 5,000,000. Rows land through the load-job sink, so the run summary is
    kept as the consumer keeps it. A refresh is what the widget calls: the symbols,
    the window of ticks, the news since the first tick (:class:`LiveFeed`). The
    first refresh reads the whole window (``first_refresh_s``); then, as in class,
    each round lands 5 s of ticks of the latest run and refreshes (the widget reads
    what landed since its last read); rounds alternate between the tables and the
    medians are compared.

    Bytes: the emulator reports no ``total_bytes_processed`` (it answers 0, dry run
    or not), so they are estimated as BigQuery bills them: rows read after pruning
    (the day partitions from the window's first day on, the symbol's clustered rows,
    the whole run summary) times the bytes of the columns read (8 per number or
    timestamp, 2 + length per string), with the on-demand minimum of 10 MB per query.
    ``before_*`` is the same for the reads before this change: four reads of the
    whole table through the dedup view per refresh.
    """
    from pipeline_lib.analysis import queries
    from pipeline_lib.sinks.bigquery import BigQuerySink

    full = size == "full"
    latest_n = 50_000 if full else 2_000
    sizes = {"small": 100_000 if full else 4_000, "large": 5_000_000 if full else 40_000}
    window = timedelta(minutes=60 if full else 2)
    rounds = 5 if full else 2
    older_start = START - timedelta(days=30)
    tables: dict[str, Settings] = {}
    live: dict[str, Any] = {}  # the latest run of each table, to go on landing
    offsets: dict[str, int] = {}
    for label, rows in sizes.items():
        settings = services().fresh(f"read-{label}")
        BigQuerySink(settings).setup()
        BigQuerySink(settings, stream="news").setup()
        older = iter(MarketSimulator(SimulatorConfig(seed=2, start=older_start)))
        _land(settings, older, rows - latest_n, first=0)
        live[label] = iter(MarketSimulator(SimulatorConfig(seed=1, start=START)))
        tag = _land(settings, live[label], latest_n, first=rows)
        tables[label], offsets[label] = settings, rows + latest_n
    rows_in_table = {label: queries.event_count(settings) for label, settings in tables.items()}
    symbol = "AAPL"
    feeds = {label: queries.LiveFeed(settings) for label, settings in tables.items()}

    def refresh(feed: queries.LiveFeed) -> int:
        if symbol not in feed.symbols():  # as the widget does: symbols, ticks, news
            raise RuntimeError(f"{symbol} is not among the symbols of the latest run")
        ticks = feed.ticks(symbol, window)
        feed.news(symbol, ticks["ts"].iloc[0])
        return len(ticks)

    def notebook(settings: Settings) -> None:
        run = queries.latest_run(settings)
        queries.runs(settings)
        queries.event_count(settings, run)
        queries.symbol_summary(settings, run)
        queries.minute_bars(settings, symbol, window, run)
        queries.top_movers(settings, run=run)
        queries.latest_ticks(settings, symbol, window, run)
        queries.latest_news(settings, symbol, None, run)
        queries.news_summary(settings, run)
        queries.news_count(settings, run)
        queries.news_and_returns(settings, run)

    first_refresh_s: dict[str, float] = {}
    for label, feed in feeds.items():  # the widget's first refresh reads the whole window
        started = time.perf_counter()
        refresh(feed)
        first_refresh_s[label] = time.perf_counter() - started
    # Then as in class: 5 s of ticks land (60, five per symbol), the widget refreshes.
    if full:  # the initial landing behind us (the smoke run does not wait)
        time.sleep(queries.LATE.total_seconds())
    refresh_s: dict[str, list[float]] = {label: [] for label in tables}
    notebook_s: dict[str, list[float]] = {label: [] for label in tables}
    plotted: dict[str, int] = {}
    for round_ in range(rounds):
        for label in tables if round_ % 2 == 0 else list(tables)[::-1]:
            _land(tables[label], live[label], 60, first=offsets[label])
            offsets[label] += 60
            started = time.perf_counter()
            plotted[label] = refresh(feeds[label])
            refresh_s[label].append(time.perf_counter() - started)
            if round_ < 3:
                started = time.perf_counter()
                notebook(tables[label])
                notebook_s[label].append(time.perf_counter() - started)
    median = {label: statistics.median(times) for label, times in refresh_s.items()}
    ratio = median["large"] / median["small"]

    # Bytes a refresh would process on real BigQuery (see above).
    sample = _ticks(1000)
    id_bytes = 2 + statistics.mean(len(t.event_id) for t in sample)
    symbol_bytes = 2 + statistics.mean(len(t.symbol) for t in sample)
    tick_row = 9 * 8 + id_bytes + symbol_bytes  # ts, OHLCV, ingested_at, kafka_* + strings
    summary_row = (2 + len(tag)) + symbol_bytes + 3 * 8
    minimum = 10 * 2**20
    bytes_by_size = {}
    for label, settings in tables.items():
        spans = queries.run_spans(settings)
        since = spans.since(window, tag, symbol)
        touched = _rows_touched(settings, symbol, since)
        reads = [len(spans.frame) * summary_row, touched * tick_row, 0]  # news: none here
        bytes_by_size[label] = {
            "estimated_bytes_per_refresh": int(sum(reads)),
            "billed_bytes_per_refresh": int(sum(max(minimum, r) for r in reads)),
            "before_estimated_bytes_per_refresh": int(4 * sizes[label] * tick_row),
            "before_billed_bytes_per_refresh": int(4 * max(minimum, sizes[label] * tick_row)),
        }
    hourly = 3600 / 5.0  # the widget's default refresh
    return {
        "name": "read_cost",
        "rows": sizes,
        "rows_in_table": rows_in_table,
        "latest_run_rows": latest_n,
        "window_minutes": int(window.total_seconds() // 60),
        "ticks_plotted": plotted,
        "rounds": rounds,
        "first_refresh_s": {k: round(v, 3) for k, v in first_refresh_s.items()},
        "refresh_s": {k: [round(t, 3) for t in v] for k, v in refresh_s.items()},
        "median_refresh_s": {k: round(v, 3) for k, v in median.items()},
        "large_over_small_refresh": round(ratio, 2),
        "notebook_04_queries_s": {k: [round(t, 2) for t in v] for k, v in notebook_s.items()},
        "bytes": bytes_by_size,
        "billed_gib_per_hour_at_5s_refresh": {
            k: round(v["billed_bytes_per_refresh"] * hourly / 2**30, 2)
            for k, v in bytes_by_size.items()
        },
        "before_billed_gib_per_hour_at_5s_refresh": {
            k: round(v["before_billed_bytes_per_refresh"] * hourly / 2**30, 1)
            for k, v in bytes_by_size.items()
        },
        "goal": "refresh at 5M rows / at 100k <= 1.2, and < 0.3 s at 5M (medians)",
        "met": ratio <= 1.2 and median["large"] < 0.3,
    }


FIGURES = {
    "simulator_rate": simulator_rate,
    "end_to_end": end_to_end,
    "producer_ceiling": producer_ceiling,
    "freshness": freshness,
    "storage_write": storage_write,
    "notebook_flow": notebook_flow,
    "backlog": backlog,
    "replication_cost": replication_cost,
    "failover": failover,
    "sentiment_rate": sentiment_rate,
    "two_streams": two_streams,
    "secure_kafka": secure_kafka,
    "read_cost": read_cost,
}
PIPELINE_FIGURES = set(FIGURES) - {"simulator_rate", "sentiment_rate"}
