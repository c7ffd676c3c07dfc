"""``python -m flash_tasks build ...``: the same as the ``flash`` command."""

import sys

from ._launch import main

sys.exit(main())
