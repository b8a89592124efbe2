"""The benchmark code runs at a tiny size on the test services (speed is not asserted)."""

import json

from bench.__main__ import main


def test_every_figure_runs_tiny(services, cluster, secure_kafka, tmp_path):
    output = tmp_path / "results.json"
    main(
        ["--size", "tiny", "--output", str(output)],
        settings=services,
        cluster=cluster,
        secure=secure_kafka,
    )
    results = json.loads(output.read_text())
    figures = {f["name"]: f for f in results["figures"]}
    assert set(figures) == {
        "simulator_rate",
        "end_to_end",
        "producer_ceiling",
        "freshness",
        "storage_write",
        "notebook_flow",
        "backlog",
        "replication_cost",
        "failover",
        "sentiment_rate",
        "two_streams",
        "secure_kafka",
        "read_cost",
        "lab_grading",
        "class_of_30",
    }
    assert not [f for f in figures.values() if "error" in f], figures
    assert figures["end_to_end"]["baseline_records_per_s"] > 0
    assert figures["end_to_end"]["consumer_peak_rss_mib"] > 0
    assert figures["producer_ceiling"]["java_producer_perf_records_per_s"] > 0
    assert figures["freshness"]["rows_seen"][0] > 0 and figures["freshness"]["median_p99_s"] > 0
    assert figures["backlog"]["records_per_s"] > 0
    writers = figures["storage_write"]["freshness_by_writer"]
    assert set(writers) == {"storage", "storage-at-least-once", "load"}
    assert all(
        w["rows_counted"][0] > 0 and w["write_ms_per_batch"][0] > 0 for w in writers.values()
    )
    read = figures["read_cost"]
    assert read["rows_in_table"] == read["rows"]  # every landed tick is a distinct event
    assert read["ticks_plotted"]["small"] == read["ticks_plotted"]["large"] > 0
    assert read["median_refresh_s"]["large"] > 0
    assert set(figures["end_to_end"]["by_bigquery_writer"]) == set(writers)
    assert figures["replication_cost"]["ratio_rf3_to_rf1"] > 0
    assert figures["secure_kafka"]["consume_records_per_s"]["sasl_ssl"] > 0
    assert 0 < figures["failover"]["median_s"] < 60
    assert figures["sentiment_rate"]["headlines_scored_per_s"] > 0
    assert figures["class_of_30"]["each_landed_once_in_own_dataset"]
    assert figures["class_of_30"]["add_students_s"] > 0
    assert figures["lab_grading"]["all_passed"] and figures["lab_grading"]["slowest_s"] > 0
    assert (
        figures["two_streams"]["news"] > 0
        and figures["two_streams"]["ratio_both_to_ticks_only"] > 0
    )
    cpu = figures["end_to_end"]["cpu_s_per_100k_records"]
    assert set(cpu) == {
        "bare_consumer",
        "consumer",
        "consumer_with_setup",
        "kafka",
        "gcs",
        "bigquery",
    }
    assert cpu["consumer"] > 0 and cpu["bare_consumer"] > 0
    assert figures["end_to_end"]["cpu_ratio_to_bare"] > 0
    assert figures["end_to_end"]["consumer_startup_cpu_s"] > 0
    assert {"poll", "decode", "sink:gcs", "sink:bigquery", "commit"} <= set(
        figures["end_to_end"]["stage_s_per_100k_records"]
    )
    assert "| end_to_end |" in output.with_suffix(".md").read_text()
