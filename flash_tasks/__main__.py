"""``python -m flash_tasks build ...``: the same as the ``flash`` command."""

import sys

from .cli import main

sys.exit(main())
