import re
from pathlib import Path

import pytest

from pipeline_lib.core.config import VARIABLES, Settings
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.records.routes import route

REPO = Path(__file__).resolve().parents[2]


def test_defaults_point_at_local_services(tmp_path):
    s = Settings.from_env({"PIPELINE_HOME": str(tmp_path)})
    assert s.target == "local"
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.storage_emulator_host == "http://127.0.0.1:4443"
    assert s.bigquery_emulator_host == "http://127.0.0.1:9050"
    assert (s.kafka_port, s.gcs_port, s.bigquery_port) == (9092, 4443, 9050)
    assert route(s).table_id == "local-project.market_data.ticks"
    assert s.dead_letter_topic == "stock-ticks.dlq"
    assert s.home == tmp_path.resolve()


def test_every_name_comes_from_the_environment():
    s = Settings.from_env(
        {
            "PIPELINE_TOPIC": "t1",
            "GCP_PROJECT": "p1",
            "GCS_BUCKET": "bkt1",
            "BQ_DATASET": "d1",
            "BQ_TABLE": "x1",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
            "STORAGE_EMULATOR_HOST": "http://127.0.0.1:5555",
            "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:6666",
        }
    )
    assert (s.topic, s.dead_letter_topic, s.gcs_bucket, route(s).table_id) == (
        "t1",
        "t1.dlq",
        "bkt1",
        "p1.d1.x1",
    )
    assert (s.kafka_port, s.gcs_port, s.bigquery_port) == (29092, 5555, 6666)


def test_remote_bootstrap_without_emulators_selects_real_cloud():
    s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "broker.example.com:9092"})
    assert s.target == "cloud"
    assert s.storage_emulator_host is None and s.bigquery_emulator_host is None
    assert not s.is_local


def test_cloud_keeps_an_explicit_emulator():
    s = Settings.from_env(
        {
            "PIPELINE_TARGET": "cloud",
            "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
            "STORAGE_EMULATOR_HOST": "http://e:1",
        }
    )
    assert s.storage_emulator_host == "http://e:1" and s.bigquery_emulator_host is None


def test_cloud_without_bootstrap_says_which_variable():
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        Settings.from_env({"PIPELINE_TARGET": "cloud"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PIPELINE_TARGET": "mars"}, "PIPELINE_TARGET"),
        ({"PIPELINE_PARTITIONS": "three"}, "PIPELINE_PARTITIONS"),
        ({"PIPELINE_PARTITIONS": "0"}, "PIPELINE_PARTITIONS"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_port_less_emulator_url_is_a_clear_error():
    s = Settings.from_env({"STORAGE_EMULATOR_HOST": "http://localhost"})
    with pytest.raises(ConfigError, match="STORAGE_EMULATOR_HOST"):
        _ = s.gcs_port


def test_secret_never_printed():
    s = Settings.from_env({"ALPHAVANTAGE_API_KEY": "SECRET123"})
    assert s.alphavantage_api_key == "SECRET123"
    assert "SECRET123" not in repr(s.public_dict()) and "SECRET123" not in repr(s)
    assert s.public_dict()["alphavantage_api_key"] == "set"


def test_env_example_lists_every_variable():
    text = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    assert listed == set(VARIABLES)
    assert not re.search(r"^ALPHAVANTAGE_API_KEY=\S", text, flags=re.M), (
        "no real key in the example"
    )


def test_configuration_page_documents_every_variable():
    """The docs' configuration page is generated from VARIABLES by docs/hooks.py; build
    it through the hook, as `mkdocs build` does, and check that each variable has its row."""
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    source = (REPO / "docs" / "configuration.md").read_text()
    page = hooks.on_page_markdown(
        source, page=SimpleNamespace(file=SimpleNamespace(src_uri="configuration.md"))
    )
    assert hooks.MARKER not in page
    missing = [name for name in VARIABLES if f"| `{name}` |" not in page]
    assert not missing


def test_to_env_round_trips(tmp_path):
    original = Settings.from_env(
        {
            "PIPELINE_HOME": str(tmp_path),
            "PIPELINE_TOPIC": "t9",
            "BQ_DATASET": "d9",
            "KAFKA_CONTROLLER_PORT": "1234",
            "PIPELINE_DELIVERY_TIMEOUT_S": "100000.5",
        }
    )
    assert Settings.from_env(original.to_env()) == original
    assert Settings.from_env({"PIPELINE_TARGET": "  "}).target == "local"  # blank = unset
    cloud = Settings.from_env({"PIPELINE_TARGET": "cloud", "KAFKA_BOOTSTRAP_SERVERS": "k:1"})
    assert Settings.from_env(cloud.to_env()) == cloud


def test_broker_unreachable_says_what_to_do_for_each_target(monkeypatch):
    from pipeline_lib.clients import probe
    from pipeline_lib.clients.kafka import broker_unreachable

    monkeypatch.setattr(probe, "refusal", lambda settings, security: None)  # no network

    local = broker_unreachable(Settings.from_env({}), TimeoutError("x"))
    assert "127.0.0.1:9092" in str(local) and "python -m pipeline_lib up" in str(local)
    cloud = broker_unreachable(
        Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "kafka.example.com:9092"}), TimeoutError("x")
    )
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(cloud) and "pipeline_lib up" not in str(cloud)
