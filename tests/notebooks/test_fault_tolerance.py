"""05_fault_tolerance run headless by papermill on the three-broker cluster, then inspected."""

from __future__ import annotations

import base64
import re

import nbformat

from pipeline_lib import local
from pipeline_lib.cli.flow import FAULT_TOLERANCE, run_notebook
from pipeline_lib.ops import cluster
from tests.helpers import bq_event_ids


def test_the_drill_loses_nothing_and_leaves_the_cluster_as_found(cluster_settings, tmp_path):
    settings = cluster_settings
    before = {node.node_id for node in local.kafka_nodes(settings) if node.running_pid()}
    notebook, html = run_notebook(
        FAULT_TOLERANCE,
        settings,
        {"records": 6_000, "rate": 400.0, "kill_after_s": 5.0, "down_for_s": 6.0},
        output_dir=tmp_path,
    )
    cells = nbformat.read(notebook, as_version=4).cells
    outputs = [o for c in cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")

    victim = int(re.search(r"killed broker (\d+), leader of", text).group(1))
    new_leader = int(re.search(r"new leader of partition 0: broker (\d+)", text).group(1))
    assert new_leader != victim
    counts = dict(re.findall(r"(\w+)=(\d+)", re.search(r"acknowledged=.*", text).group(0)))
    assert counts["acknowledged"] == counts["bigquery"] == counts["gcs"] == "6000"
    assert counts["failed"] == counts["missing_in_bigquery"] == "0"
    assert len(bq_event_ids(settings)) == 6_000  # checked again, outside the notebook

    pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and base64.b64decode(pngs[0]).startswith(b"\x89PNG")
    assert html.stat().st_size > 10_000

    after = {node.node_id for node in local.kafka_nodes(settings) if node.running_pid()}
    assert after == before == {1, 2, 3}
    cluster.wait_for(settings, cluster.fully_replicated, "all replicas in sync", 60)
