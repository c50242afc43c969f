"""What this machine can hold: its RAM, for the checks that refuse a config or a dataset
before allocating it."""
from __future__ import annotations

import os


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where unknown)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
