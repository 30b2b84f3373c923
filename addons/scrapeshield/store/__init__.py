"""State backends. `open_store(url)` picks one from a URL: `memory://` or `redis://...`."""
from __future__ import annotations

from .base import Batch, BatchResult, BucketCheck, ScoreUpdate, Store, StoreError
from .memory import MemoryStore

__all__ = ["Batch", "BatchResult", "BucketCheck", "MemoryStore", "ScoreUpdate", "Store", "StoreError", "open_store"]


def open_store(url: str | None, **options: object) -> Store:
    if not url or url.startswith("memory:"):
        return MemoryStore(**{k: v for k, v in options.items() if k == "max_keys"})  # type: ignore[arg-type]
    from .redis import RedisStore  # imported lazily: redis-py is only needed when used

    return RedisStore.from_url(url, **options)  # type: ignore[arg-type]
