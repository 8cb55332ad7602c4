"""Byte counts for people: progress bars (downloads, digests, archive checks) and sizes in messages."""

from __future__ import annotations

from tqdm import tqdm


def byte_progress(desc: str, progress: bool, total: int | None = None, initial: int = 0) -> tqdm:
    """A tqdm bar counting bytes (KiB, MiB, ...), cleared when done; `progress=False` shows nothing."""
    return tqdm(desc=desc, total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, leave=False)


def format_bytes(count: int) -> str:
    """`count` bytes for a message: 512 bytes, 3.2 KiB, 1.5 GiB."""
    if count < 1024:
        return f"{count} bytes"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"
