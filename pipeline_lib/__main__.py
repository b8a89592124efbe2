"""``python -m pipeline_lib``: see :mod:`pipeline_lib.cli`."""

import sys

from pipeline_lib.cli import main

sys.exit(main())
