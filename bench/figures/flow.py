"""The whole flow: the headless notebooks (figure 5), and both streams end to end."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.services import START, count_for, json_result, run_python, services


def notebook_flow(size: str) -> dict:
    """Figure 5: wall time of the headless notebook flow, caches warm: the demo as
    ``make demo`` runs it and, at full size, with the lessons (notebook 03's crash
    drills and notebook 07), as ``demo --lessons`` and the tests run it; until the
    lessons became opt-in the demo was the latter."""
    from pipeline_lib.cli.flow import run_flow

    records = 20_000 if size == "full" else 300
    kinds = {"demo": False, "with_lessons": True} if size == "full" else {"demo": False}
    walls: dict[str, float] = {}
    per_notebook: dict[str, dict[str, float]] = {}
    for kind, lessons in kinds.items():
        settings = services().fresh("flow")
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            result = run_flow(settings, records=records, output_dir=Path(folder), lessons=lessons)
            walls[kind] = round(time.perf_counter() - started, 1)
        per_notebook[kind] = {k: round(v, 1) for k, v in result.seconds.items()}
    figure = {
        "name": "notebook_flow",
        "records": records,
        "wall_s": walls["demo"],
        "per_notebook_s": per_notebook["demo"],
        "goal": "< 120 s",
        "met": walls["demo"] < 120,
    }
    if "with_lessons" in walls:
        figure["with_lessons_wall_s"] = walls["with_lessons"]
        figure["with_lessons_per_notebook_s"] = per_notebook["with_lessons"]
    return figure


def two_streams(size: str) -> dict:
    """End to end with both streams: ticks and the news among them produced in one run,
    then `consume` (one member per stream) lands both; records/s of each phase, beside
    the same ticks alone on the same services (alternated, best of two)."""
    from pipeline_lib.kafka_io.producer import produce
    from pipeline_lib.sources import source_from_parameters, stream

    n = count_for(size, 100_000, 2_000)
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
            reports = json_result(
                run_python(
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
