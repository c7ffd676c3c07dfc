"""Copy .flash-template/ into flash_tasks/templates/app/, the starter `flash init` ships.

    python scripts/sync_template.py

.flash-template/ is the source of truth (the README builds it, tests copy it);
the copy inside the package is what an installed `flash init` can reach.
tests/test_cli.py fails while the two differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flash_tasks.commands.init import TEMPLATE, sync_template

if __name__ == "__main__":
    changed = sync_template(REPO / ".flash-template", TEMPLATE)
    print("\n".join(f"updated {rel}" for rel in changed) or "already in sync")
