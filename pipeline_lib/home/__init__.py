"""The local home folder as a layer of configuration.

``up`` records things in the home (``PIPELINE_HOME``): how many brokers it started,
whether it made a secure Kafka, that Kafka's CA and generated logins. Those records
are defaults, merged under the process environment by :func:`load_settings`, the one
entry point notebooks and the command line use; :class:`~pipeline_lib.core.config.
Settings` itself never reads the disk.
"""

from pipeline_lib.home.defaults import home_defaults
from pipeline_lib.home.load import load_settings

__all__ = ["home_defaults", "load_settings"]
