"""Progress bars for byte counts (downloads, digests, archive checks): one home for how they look."""

from __future__ import annotations

from tqdm import tqdm


def byte_progress(desc: str, progress: bool, total: int | None = None, initial: int = 0) -> tqdm:
    """A tqdm bar counting bytes (KiB, MiB, ...), cleared when done; `progress=False` shows nothing."""
    return tqdm(desc=desc, total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, leave=False)
