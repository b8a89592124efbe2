"""environment.yml (conda) and pyproject.toml (pip) must list the same dependencies."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_normalise(r) for r in project["dependencies"]}
    wanted |= {_normalise(r) for r in project["optional-dependencies"]["dev"]}
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    listed = {_normalise(r) for r in pip_section if not r.startswith("-")}
    assert listed == wanted, (
        f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"
    )


def test_environment_yml_brings_java_and_maven():
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    plain = [d for d in environment["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("python=3.11") for d in plain)
    assert any(d.startswith("openjdk=17") for d in plain)
    assert any(d.startswith("maven") for d in plain)


def test_kafka_pom_is_packaged_and_pins_the_broker():
    pom = (REPO / "pipeline_lib" / "local" / "kafka-pom.xml").read_text()
    assert "<artifactId>kafka_2.13</artifactId>" in pom
    assert "<kafka.version>4.1.1</kafka.version>" in pom
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "local/*.xml" in project["tool"]["setuptools"]["package-data"]["pipeline_lib"]


def test_only_the_package_goes_into_the_wheel():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["pipeline_lib*"]


def test_every_error_the_package_defines_derives_from_pipeline_error():
    import importlib
    import inspect
    import pkgutil

    import pipeline_lib
    from pipeline_lib.core.errors import PipelineError

    offenders = []
    for module_info in pkgutil.walk_packages(pipeline_lib.__path__, "pipeline_lib."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__ == module.__name__
                and not issubclass(value, PipelineError)
            ):
                offenders.append(f"{module.__name__}.{name}")
    assert not offenders


def test_every_local_service_home_is_ignored_by_git():
    """Broker logs and emulator data must never be committed (a cluster's home once was)."""
    import subprocess

    from bench.services import BENCH_CLUSTER_HOME, BENCH_ENVIRONMENT
    from pipeline_lib.home.files import default_home as _default_home
    from tests.conftest import CLUSTER_HOME, TEST_ENVIRONMENT

    homes = [
        _default_home().name,
        Path(TEST_ENVIRONMENT["PIPELINE_HOME"]).name,
        CLUSTER_HOME.name,
        Path(BENCH_ENVIRONMENT["PIPELINE_HOME"]).name,
        BENCH_CLUSTER_HOME.name,
    ]
    for home in homes:
        probe = f"{home}/kafka-1/data/meta.properties"
        result = subprocess.run(["git", "check-ignore", "-q", probe], cwd=REPO, check=False)
        assert result.returncode == 0, f"{home}/ is not in .gitignore"
