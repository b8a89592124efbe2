"""The real notebooks, run headless by papermill against the local services, then inspected."""

from __future__ import annotations

import base64
import re

import nbformat
import pytest

from pipeline_lib.cli.flow import NOTEBOOKS, run_flow
from pipeline_lib.core.names import run_names
from pipeline_lib.ops.cluster import describe_cluster
from tests.helpers import bq_event_ids

SENTINEL_KEY = "SENTINEL-ALPHAVANTAGE-KEY-4c1d"


@pytest.fixture(scope="module")
def flow(services, tmp_path_factory):
    settings = run_names(services, "nb").with_overrides(
        alphavantage_api_key=SENTINEL_KEY,  # in the kernels' environment only
    )
    # This seed and start put three stories among the 3,000 ticks, one of them price-moving.
    result = run_flow(
        settings,
        records=3_000,
        seed=5,
        start="2024-03-05T14:30:00Z",
        output_dir=tmp_path_factory.mktemp("flow"),
        lessons=True,  # the crash drills and the schema lesson too
    )
    return settings, result


def outputs(path):
    notebook = nbformat.read(path, as_version=4)
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]


def stdout_text(path) -> str:
    return "".join(o.get("text", "") for o in outputs(path) if o.get("name") == "stdout")


def test_every_notebook_ran_without_error_and_was_exported(flow):
    _, result = flow
    for name in NOTEBOOKS:
        assert not [o for o in outputs(result.notebooks[name]) if o.output_type == "error"], name
        assert result.html[name].stat().st_size > 10_000
    produced = stdout_text(result.notebooks["02_producer"])
    settings = flow[0]
    news = int(re.search(rf"'{settings.news_topic}' \(([\d,]+)\)", produced)[1].replace(",", ""))
    assert f"'{settings.topic}' (3,000)" in produced and news > 0  # ticks, and news among them
    assert f"produced {3_000 + news:,} of {3_000 + news:,} records" in produced
    consumer_out = stdout_text(result.notebooks["03_consumer"])
    assert f"consumed 3,000 records from '{settings.topic}'" in consumer_out
    assert f"consumed {news:,} records from '{settings.news_topic}'" in consumer_out
    assert "batch 1:" not in consumer_out  # calm: one status line unless verbose
    tables = [
        o["data"].get("text/html", "")
        for o in outputs(result.notebooks["03_consumer"])
        if "data" in o
    ]
    assert any("in_sync" in t and "messages" in t for t in tables)  # the partition table
    assert any("committed_offset" in t and "lag" in t for t in tables)  # offsets per partition
    assert any("assigned" in t for t in tables)  # what the group gave this member
    letters = next(t for t in tables if "reason" in t and "stage" in t)
    assert "close" in letters and "12.5" in letters  # the deliberately bad tick, with why
    # the crash drill: a SIGKILL between the sinks and the commit, then the counts
    storage = re.search(
        r"([\d,]+) records in Kafka;.*: each once \(BQ_WRITE=storage\)", consumer_out
    )
    load = re.search(r"([\d,]+) duplicates \(BQ_WRITE=load\)", consumer_out)
    assert storage and storage[1] == "3,000", consumer_out[-2000:]
    assert load and int(load[1].replace(",", "")) > 0
    assert any("rows at the kill" in t and "duplicates" in t for t in tables)
    partitions = describe_cluster(settings, [settings.topic]).partitions
    assert len(partitions) == 3 and all(p.messages > 0 for p in partitions)  # keys spread


def test_analysis_holds_figures_and_its_count_matches_bigquery(flow):
    settings, result = flow
    analysis = result.notebooks["04_analysis"]
    pngs = [o["data"]["image/png"] for o in outputs(analysis) if "image/png" in o.get("data", {})]
    assert len(pngs) == 3  # Close/Volume, candles, news over close
    assert all(base64.b64decode(p).startswith(b"\x89PNG") for p in pngs)
    lines = stdout_text(analysis).splitlines()
    printed = next(line for line in lines if line.startswith("events_in_run"))
    assert int(printed.split("=")[1]) == len(bq_event_ids(settings)) == 3_000
    stories = next(line for line in lines if line.startswith("stories_in_run"))
    produced = stdout_text(result.notebooks["02_producer"])
    sent = re.search(rf"'{settings.news_topic}' \(([\d,]+)\)", produced)[1].replace(",", "")
    assert int(stories.split("=")[1]) == int(sent) > 0
    tables = [o["data"].get("text/html", "") for o in outputs(analysis) if "data" in o]
    assert any("next minute" in t and "correlation" in t for t in tables)  # the lead-lag table


def test_html_exports_fetch_nothing_from_the_internet(flow):
    _, result = flow
    for path in result.html.values():
        html = path.read_text()
        remote = re.findall(r"<(?:script|link|img)[^>]+(?:src|href)=\"(https?:[^\"]+)\"", html)
        assert remote == [], (path.name, remote)
    analysis = result.html["04_analysis"].read_text()
    figures = re.findall(r'<img[^>]+src="data:image/png;base64,', analysis)
    assert len(figures) == 3  # the figures are inside the page


def test_secrets_never_reach_executed_notebooks(flow):
    _, result = flow
    for path in [*result.notebooks.values(), *result.html.values()]:
        assert SENTINEL_KEY not in path.read_text(errors="replace"), path.name


def test_setup_notebook_is_idempotent(flow):
    settings, result = flow
    setup_out = outputs(result.notebooks["01_setup"])
    assert any("BigQuery view" in str(o.get("data", {}).get("text/plain", "")) for o in setup_out)
    from pipeline_lib.ops.provision import provision

    again = provision(settings, start_local=True)
    assert set(again.loc[again["resource"].str.contains("topic"), "state"]) == {"exists"}


def test_a_server_echoing_the_key_leaks_it_nowhere(services, tmp_path):
    """02_producer on the AlphaVantage source against a hostile endpoint that echoes the
    request URL: the run fails with a masked error; the key is in neither the executed
    notebook, its HTML export, nor papermill's log."""
    from pipeline_lib.cli.flow import FlowFailed, _start, _wait, export_html
    from tests.fixtures.alphavantage import EchoingServer

    with EchoingServer() as echo:
        echo.mode = "not-json"
        settings = services.with_overrides(
            alphavantage_api_key=SENTINEL_KEY, alphavantage_base_url=echo.url, home=tmp_path
        )
        env = {**__import__("os").environ, **settings.to_env()}
        process = _start("02_producer", tmp_path, {"source": "alphavantage"}, env)
        with pytest.raises(FlowFailed) as failed:
            _wait("02_producer", process, tmp_path, 300)
    notebook = tmp_path / "02_producer.ipynb"
    errors = [o for o in outputs(notebook) if o.output_type == "error"]
    assert errors and errors[0]["ename"] == "AlphaVantageError"
    assert "apikey=***" in str(errors[0]["evalue"])
    html = export_html(notebook)
    for path in (notebook, html, tmp_path / "02_producer.log"):
        assert SENTINEL_KEY not in path.read_text(errors="replace"), path.name
    assert SENTINEL_KEY not in str(failed.value)


def test_the_schema_lesson_lands_a_newer_contract_and_refuses_a_type_change(flow):
    _, result = flow
    lesson = result.notebooks["07_schema_evolution"]
    assert not [o for o in outputs(lesson) if o.output_type == "error"]
    text = stdout_text(lesson)
    # step 1: 600 of ticks/1.0 and 600 of ticks/1.1, every one landed, none a dead letter
    assert "landed 1,200 records" in text and "0 to the dead-letter topic" in text
    assert "600 records carried fields" in text and "'exchange' ×600" in text
    assert '"exchange":"XNAS"' in text or '"exchange":"XNYS"' in text  # the raw GCS line
    tables = [o["data"].get("text/html", "") for o in outputs(lesson) if "data" in o]
    assert any("extra" in t and "XNAS" in t for t in tables)  # the extra JSON column
    assert any("bid" in t and "FLOAT64" in t for t in tables)  # the columns added
    # step 3: the type change and the major version, each refused in one line
    assert "landed 0 records" in text and "6 to the dead-letter topic" in text
    assert "field 'exchange' is STRING" in text and "INT64 12" in text
    assert "ticks/2.0, a major version" in text
    assert result.html["07_schema_evolution"].stat().st_size > 10_000
