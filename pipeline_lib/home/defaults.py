"""What the local home contributes to the settings: defaults, as variable texts.

:func:`home_defaults` reads the home an environment names and returns the variables
it would default, to be merged *under* that environment: a variable the user set
always wins. On a remote target the home contributes only its own folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline_lib.core.config import VARIABLES, check_brokers
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.home import files


def _given(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def _kafka_target(env: Mapping[str, str]) -> str:
    """Where the environment puts Kafka, read as the settings read it (KAFKA_TARGET,
    else PIPELINE_TARGET): the home's records are about its local Kafka."""
    shorthand = VARIABLES["PIPELINE_TARGET"]
    raw = _given(env, shorthand.name) or shorthand.default_text({}, env)
    own = VARIABLES["KAFKA_TARGET"]
    return own.read(_given(env, own.name) or shorthand.read(raw, shorthand.name), own.name)


def home_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """Variables the home of ``env`` defaults: ``PIPELINE_HOME`` (``./.pipeline`` in a
    checkout); on a local target the broker count `up` last ran; on a home made by
    `up --secure`, SASL_SSL, and for a client using it, the SCRAM mechanism, the
    ``pipeline`` login with its generated password and the home's CA."""
    home = Path(_given(env, "PIPELINE_HOME") or files.default_home()).expanduser()
    defaults = {"PIPELINE_HOME": str(home)}
    if _kafka_target(env) != "local":
        return defaults
    recorded = files.recorded_brokers(home)
    try:
        if recorded is not None:
            defaults["PIPELINE_BROKERS"] = str(check_brokers(recorded))
    except ConfigError:  # a layout file edited by hand: not a reason to stop every command
        pass
    if not files.is_secure_home(home):
        return defaults
    defaults["KAFKA_SECURITY_PROTOCOL"] = "SASL_SSL"
    if (_given(env, "KAFKA_SECURITY_PROTOCOL") or "SASL_SSL").upper() != "SASL_SSL":
        return defaults  # a client told to use another protocol gets none of the rest
    defaults["KAFKA_SASL_MECHANISM"] = files.MECHANISM
    defaults["KAFKA_SASL_USERNAME"] = files.PIPELINE
    user = _given(env, "KAFKA_SASL_USERNAME") or files.PIPELINE
    password = files.local_password(home, user)
    if password:
        defaults["KAFKA_SASL_PASSWORD"] = password
    if files.ca_file(home).is_file():  # a home whose files were removed still starts
        defaults["KAFKA_SSL_CAFILE"] = str(files.ca_file(home))
    return defaults
