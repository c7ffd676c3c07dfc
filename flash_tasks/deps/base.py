"""What the dependency modules share: the base of their models and two constants.

Kept apart from the settings so that reading the install record (every build
does) builds no more models than it needs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: Bumped whenever the lock or state layout changes, so old files are redone.
LOCK_FORMAT = 1
#: A requirements file bigger than this is not a requirements file (``-r /dev/zero``, a data file).
MAX_REQUIREMENTS_BYTES = 4 * 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
