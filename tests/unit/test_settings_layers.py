"""Settings are a function of their mapping; the home is a layer of its own.

``Settings.from_env`` reads nothing but the mapping it is given, so the same mapping
gives the same settings whatever a home folder holds; ``load_settings`` is where the
home's records (the brokers `up` ran, a secure home's logins and CA) come in, under
the environment.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from pipeline_lib.core import config
from pipeline_lib.core.config import Settings
from pipeline_lib.home import home_defaults, load_settings
from pipeline_lib.home.files import KAFKA_LAYOUT_FILE
from pipeline_lib.local import secure

PACKAGE = Path(config.__file__).resolve().parents[1]


def _environment(home: Path) -> dict[str, str]:
    return {
        "PIPELINE_HOME": str(home),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
        "KAFKA_CONTROLLER_PORT": "29093",
    }


def test_the_same_environment_gives_the_same_settings_whatever_the_home_holds(tmp_path):
    empty, three, secure_home = tmp_path / "empty", tmp_path / "three", tmp_path / "secure"
    empty.mkdir()
    three.mkdir()
    (three / KAFKA_LAYOUT_FILE).write_text(json.dumps({"brokers": 3}))
    secure.prepare_home(secure_home)
    before = Settings.from_env(_environment(empty))
    for home in (three, secure_home):
        # a home that recorded three brokers, or a secure Kafka, changes nothing but
        # the folder: what it holds is the home layer's to read, not the settings'
        assert Settings.from_env(_environment(home)) == before.with_overrides(home=home)
        assert load_settings(_environment(home)) != before.with_overrides(home=home)


def test_the_home_is_a_layer_merged_under_the_environment(tmp_path):
    three = tmp_path / "three"
    three.mkdir()
    (three / KAFKA_LAYOUT_FILE).write_text(json.dumps({"brokers": 3}))
    assert home_defaults(_environment(three))["PIPELINE_BROKERS"] == "3"
    assert load_settings(_environment(three)).brokers == 3
    # a variable the user sets wins over the home
    assert load_settings({**_environment(three), "PIPELINE_BROKERS": "1"}).brokers == 1
    # a remote target takes nothing from a local home but its folder
    remote = {**_environment(three), "PIPELINE_TARGET": "cloud"}
    remote["KAFKA_BOOTSTRAP_SERVERS"] = "kafka.example.com:9092"
    assert set(home_defaults(remote)) == {"PIPELINE_HOME"}


def test_the_settings_module_imports_only_the_error_root_and_the_checks():
    """Deferred imports included: the module defining Settings stands on nothing else."""
    tree = ast.parse((PACKAGE / "core" / "config.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    ours = {name for name in imported if name.startswith("pipeline_lib")}
    assert ours == {"pipeline_lib.core.errors", "pipeline_lib.core.checks"}
    source = (PACKAGE / "core" / "config.py").read_text()
    for reach in ("open(", "read_text", "os.environ", "register_secret", "socket"):
        assert reach not in source, reach
