"""The benchmark code runs at a tiny size (speed itself is never asserted in tests)."""

import json

from bench.__main__ import main


def test_simulator_figure_runs_tiny(tmp_path):
    output = tmp_path / "results.json"
    assert main(["--size", "tiny", "--only", "simulator_rate", "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    figure = results["figures"][0]
    assert figure["name"] == "simulator_rate"
    assert figure["simulator_records_per_s"] > 0
    assert results["machine"]["cpus"] >= 1
    assert "| simulator_rate |" in output.with_suffix(".md").read_text()
