"""The one way the package reads its settings: the environment over the home's
defaults, every secret registered for masking."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pipeline_lib.core.config import VARIABLES, Settings
from pipeline_lib.core.secrets import register_secret
from pipeline_lib.home.defaults import home_defaults


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from ``env`` (default: the process environment) over what the local
    home recorded, with optional field overrides. Secret values are registered, so
    they are masked in every later message."""
    env = os.environ if env is None else env
    given = {name: value for name, value in env.items() if value.strip()}
    settings = Settings.from_env({**home_defaults(env), **given})
    for variable in VARIABLES.values():
        if variable.secret:
            register_secret(getattr(settings, variable.field))
    return settings.with_overrides(**overrides) if overrides else settings
