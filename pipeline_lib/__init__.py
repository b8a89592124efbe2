"""pipeline_lib: stock ticks from a source through Kafka into GCS and BigQuery.

The notebooks in ``notebooks/`` are thin: they call into this package, which is
tested. Start with ``python -m pipeline_lib --help``.
"""

from pipeline_lib.core.config import Settings
from pipeline_lib.home import load_settings

__all__ = ["Settings", "load_settings"]
__version__ = "0.1.0"
