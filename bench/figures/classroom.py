"""A class of 30 on one machine (class_of_30): 30 students, each with the handout
``class add`` gave them, producing and consuming at once at classroom pace on three
brokers in secure mode; each student's ticks must land once in their own dataset and
nowhere else.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.services import services, simulated_ticks
from pipeline_lib.core.config import VARIABLES, Settings
from pipeline_lib.core.names import run_names

RATE_PER_STUDENT = 5.0  # ticks a second: the simulator's five symbols, a bar a second


def _broker_sampler(settings: Settings) -> tuple[threading.Event, dict]:
    """Every 2 s, each broker's resident memory (the peak is kept); CPU seconds at the
    start and at the stop."""
    from pipeline_lib import local

    pids = [n.running_pid() for n in local.kafka_nodes(settings)]
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        total = 0.0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def rss_mib(pid: int) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    found = {"peak_rss_mib": dict.fromkeys(range(1, len(pids) + 1), 0.0)}
    found["cpu_start"], found["start"] = cpu(), time.monotonic()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for node, pid in enumerate(pids, start=1):
                peak = found["peak_rss_mib"]
                peak[node] = max(peak[node], rss_mib(pid))
            stop.wait(2)
        found["cpu_s"] = cpu() - found["cpu_start"]
        found["wall_s"] = time.monotonic() - found["start"]

    threading.Thread(target=sample, daemon=True).start()
    return stop, found


def _student(handout: dict[str, str], folder: Path, ticks: int, seed: int) -> subprocess.Popen:
    """The student's process (:mod:`bench.student`): nothing of the teacher's
    environment, the handout instead; it touches ``folder/ready`` once its consumer
    has joined, and produces once ``folder/../go`` exists."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(handout, PIPELINE_HOME=str(folder))
    command = [sys.executable, "-m", "bench.student", "--ticks", str(ticks)]
    command += ["--rate", str(RATE_PER_STUDENT), "--seed", str(seed)]
    command += ["--ready", str(folder / "ready"), "--go", str(folder.parent / "go")]
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _landed(own: Settings) -> list[tuple[str, float]]:
    """(event id, seconds from produced to landed) of every row of the student's table."""
    from pipeline_lib.clients.google import bigquery_client
    from pipeline_lib.records.routes import route

    sql = f"SELECT event_id, produced_at, ingested_at FROM {route(own).table_sql}"  # noqa: S608
    rows = bigquery_client(own).query(sql).result()
    return [(r.event_id, (r.ingested_at - r.produced_at).total_seconds()) for r in rows]


def class_of_30(size: str) -> dict:
    """30 students (2 at tiny size, on the one secure broker) for two minutes (4 s):
    the time to add them, the time until all their consumers have joined (thirty
    processes starting on two cores), then, all producing at once, the brokers' CPU
    and peak memory, each student's freshness p99 (produced to landed: the consumer's
    ``ingested_at``), and whether each student's table holds exactly their ticks."""
    from pipeline_lib.classroom.enrol import add_students, remove
    from pipeline_lib.classroom.handout import read_handout
    from pipeline_lib.classroom.roster import Student, student_settings

    full = size == "full"
    count, seconds = (30, 120) if full else (2, 4)
    ticks = int(RATE_PER_STUDENT * seconds)
    teacher = (
        run_names(services().secure_cluster(), "bench-class")
        if full
        else services().secure("class")
    )
    token = uuid.uuid4().hex[:4]
    ids = [f"c{n:02d}-{token}" for n in range(1, count + 1)]
    folder = Path(tempfile.mkdtemp(prefix="bench-class-"))
    started = time.perf_counter()
    add_students(teacher, [Student(i) for i in ids], folder / "handouts")
    add_s = time.perf_counter() - started
    try:
        processes = {
            student: _student(
                read_handout(folder / "handouts" / f"{student}.env"),
                folder / student,
                ticks,
                100 + n,
            )
            for n, student in enumerate(ids)
        }
        spawned = time.perf_counter()
        while not all((folder / s / "ready").exists() for s in ids):
            if any(p.poll() is not None for p in processes.values()):
                break  # a student ended early: its error is read below
            if time.perf_counter() - spawned > 600:
                raise RuntimeError("the students' consumers did not all join within 10 min")
            time.sleep(0.2)
        ready_s = time.perf_counter() - spawned
        stop, brokers = _broker_sampler(teacher)
        (folder / "go").touch()
        reports = {}
        for student, process in processes.items():
            out, err = process.communicate(timeout=seconds + 600)
            if process.returncode != 0:
                raise RuntimeError(f"student {student} failed: {err[-1500:]}")
            reports[student] = json.loads(out.strip().splitlines()[-1])
        stop.set()
        time.sleep(0.1)
        while "cpu_s" not in brokers:
            time.sleep(0.1)
        p99s, exact, seen, problems = {}, [], [], []
        for n, student in enumerate(ids):
            rows = _landed(student_settings(teacher, student))
            expected = {t.event_id for t in simulated_ticks(ticks, seed=100 + n)}
            landed_ids = [event_id for event_id, _ in rows]
            exact.append(sorted(landed_ids) == sorted(expected))
            if not exact[-1]:
                problems.append(
                    {
                        "student": student,
                        "rows": len(landed_ids),
                        "missing": len(expected - set(landed_ids)),
                        "twice": len(landed_ids) - len(set(landed_ids)),
                        "foreign": len(set(landed_ids) - expected),
                        "report": reports[student],
                    }
                )
            seen += landed_ids
            latencies = sorted(latency for _, latency in rows) or [float("nan")]
            p99s[student] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    finally:
        remove(teacher, ids, purge=True)
    nowhere_else = len(seen) == len(set(seen)) == ticks * count
    p99 = sorted(p99s.values())
    return {
        "name": "class_of_30",
        "students": count,
        "brokers": teacher.brokers,
        "session_s": seconds,
        "ticks_per_student": ticks,
        "add_students_s": round(add_s, 2),
        "all_consumers_joined_s": round(ready_s, 1),
        "each_landed_once_in_own_dataset": all(exact) and nowhere_else,
        "students_exact": sum(exact),
        "broker_cpu_percent": round(100 * brokers["cpu_s"] / brokers["wall_s"], 1),
        "broker_peak_rss_mib": {k: round(v) for k, v in brokers["peak_rss_mib"].items()},
        "freshness_p99_s": {
            "median_student": round(statistics.median(p99), 3),
            "worst_student": round(p99[-1], 3),
        },
        "delivered": sum(r.get("delivered", 0) for r in reports.values()),
        "bigquery_ms_per_batch_median": statistics.median(
            r["bigquery_ms_per_batch"] for r in reports.values()
        ),
        "gcs_ms_per_batch_median": statistics.median(
            r["gcs_ms_per_batch"] for r in reports.values()
        ),
        "rebalances": sum(r["rebalances"] for r in reports.values()),
        "students_cpu_s": round(sum(r["cpu_s"] for r in reports.values()), 1),
        "problems": problems,
        "goal": "each student's ticks once in their own dataset, nowhere else; the three "
        "brokers under one core between them (freshness measured: on one 2-core machine it "
        "is the thirty students' consumers and the emulators that wait for CPU)",
        "met": all(exact) and nowhere_else and brokers["cpu_s"] < brokers["wall_s"],
    }
