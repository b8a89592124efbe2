"""The benchmark code runs at a tiny size (speed itself is never asserted in tests)."""

import json
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.figures import FIGURES, PIPELINE_FIGURES

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_simulator_figure_runs_tiny(tmp_path):
    output = tmp_path / "results.json"
    assert main(["--size", "tiny", "--only", "simulator_rate", "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    figure = results["figures"][0]
    assert figure["name"] == "simulator_rate"
    assert figure["simulator_records_per_s"] > 0
    assert results["machine"]["cpus"] >= 1
    assert "| simulator_rate |" in output.with_suffix(".md").read_text()


def test_rerunning_some_figures_keeps_the_others_with_their_date(tmp_path):
    output = tmp_path / "results.json"
    earlier = {
        "date": "2026-01-01T00:00:00+00:00",
        "size": "tiny",
        "figures": [
            {"name": "simulator_rate", "simulator_records_per_s": 1},
            {"name": "end_to_end", "ratio": 0.5},
        ],
    }
    output.write_text(json.dumps(earlier))
    assert main(["--size", "tiny", "--only", "simulator_rate", "--output", str(output)]) == 0
    figures = json.loads(output.read_text())["figures"]
    assert [f["name"] for f in figures] == ["simulator_rate", "end_to_end"]
    assert figures[0]["simulator_records_per_s"] > 1 and "measured" not in figures[0]
    assert figures[1] == {"name": "end_to_end", "ratio": 0.5, "measured": earlier["date"]}


@pytest.mark.parametrize("path", sorted(BENCH.rglob("*.py")), ids=lambda p: p.name)
def test_no_bench_module_is_over_600_lines(path):
    assert len(path.read_text().splitlines()) <= 600, path.relative_to(BENCH)


def test_each_figure_is_named_by_its_function_in_a_module_of_its_family():
    for name, figure in FIGURES.items():
        assert figure.__name__ == name and figure.__module__.startswith("bench.figures.")
    assert set(FIGURES) > PIPELINE_FIGURES
