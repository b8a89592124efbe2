"""Run the benchmarks and write bench/results.json and bench/results.md.

python -m bench                 # every figure, full size
python -m bench --size tiny     # a quick smoke run (what the test suite does)
python -m bench --only simulator_rate   # re-run some figures; the others are kept
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.figures import FIGURES, PIPELINE_FIGURES
from bench.services import SIZES, using_services
from pipeline_lib.core.config import Settings

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    memory_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gib": memory_gib,
    }


def to_markdown(results: dict) -> str:
    lines = [
        f"Benchmarks of {results['date']} on {results['machine']['cpus']} CPUs, "
        f"{results['machine']['memory_gib']} GiB ({results['machine']['platform']}), "
        f"size `{results['size']}`.",
        "",
        "| figure | result | goal | met |",
        "|---|---|---|---|",
    ]
    for figure in results["figures"]:
        shown = {k: v for k, v in figure.items() if k not in {"name", "goal", "met", "error"}}
        cells = ", ".join(f"{k}: {v}" for k, v in shown.items())
        if "error" in figure:
            cells = f"error: {figure['error']}"
        lines.append(
            f"| {figure['name']} | {cells} | {figure.get('goal', '')} | "
            f"{'yes' if figure.get('met') else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def _keep_earlier(output: Path, figures: list[dict], size: str) -> list[dict]:
    """Figures of an earlier run at the same size that this one did not redo, each
    marked with the date it was measured, in the earlier order; new ones last."""
    try:
        earlier = json.loads(output.read_text())
    except (OSError, ValueError):
        return figures
    if earlier.get("size") != size:
        return figures
    fresh = {f["name"]: f for f in figures}
    merged = []
    for figure in earlier.get("figures", []):
        if figure["name"] in fresh:
            merged.append(fresh.pop(figure["name"]))
        else:
            merged.append({**figure, "measured": figure.get("measured", earlier.get("date"))})
    return merged + list(fresh.values())


def main(
    argv: list[str] | None = None,
    settings: Settings | None = None,
    cluster: Settings | None = None,
    secure: Settings | None = None,
) -> int:
    """Run the figures; ``settings``, ``cluster`` and ``secure`` (tests) reuse running
    services."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--only", default=None, help="comma-separated figure names")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {list(FIGURES)}")
    figures = []
    needs_services = any(name in PIPELINE_FIGURES for name in names)
    started = datetime.now(UTC)
    with using_services(settings, cluster, secure) if needs_services else contextlib.nullcontext():
        for name in names:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            try:
                figures.append(FIGURES[name](args.size))
            except Exception as error:  # one broken figure must not hide the others
                figures.append({"name": name, "error": f"{type(error).__name__}: {error}"})
    if args.only:
        figures = _keep_earlier(args.output, figures, args.size)
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "size": args.size,
        "machine": machine(),
        "figures": figures,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    markdown = to_markdown(results)
    args.output.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 1 if any("error" in f for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
