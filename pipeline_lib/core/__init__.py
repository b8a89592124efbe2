"""Foundations every layer stands on: the exception root (:mod:`.errors`), masking
(:mod:`.secrets`), checks of names and values (:mod:`.checks`), safe SQL text
(:mod:`.sql`), backoff (:mod:`.retry`), the configuration (:mod:`.config`, a pure
function of a mapping) and a run's own names (:mod:`.names`).

The one wiring done here: masking learns which environment variables hold secrets
from the settings table, so an error raised before any settings are read still hides
them (``secrets`` cannot import ``config``: ``config`` stands on ``errors``, which
masks).
"""

from pipeline_lib.core import config, secrets

secrets.watch_variables(config.SECRET_VARIABLES)
