"""Time-ordered ids (UUIDv7 layout, hex): sortable by creation, so keyset pagination is cheap."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | (rand & ((1 << 76) - 1))
    # Variant bits (10xx) at bits 62-63 of the low 64.
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return f"{value:032x}"
