"""State backends. `open_store(url)` picks one from a URL: `memory://`, `redis://...` (also
`rediss://`, `unix://`) or `redis+cluster://host:port,host:port,...` or `redis+sentinel://host:port,.../service`."""
from __future__ import annotations

from .base import Batch, BatchResult, BucketCheck, ScoreUpdate, Store, StoreError
from .memory import MemoryStore

__all__ = ["Batch", "BatchResult", "BucketCheck", "MemoryStore", "ScoreUpdate", "Store", "StoreError", "open_store"]


def open_store(url: str | None, **options: object) -> Store:
    if not url or url.startswith("memory:"):
        return MemoryStore(**{k: v for k, v in options.items() if k == "max_keys"})  # type: ignore[arg-type]
    from .redis import CLUSTER_SCHEME, SENTINEL_SCHEME, RedisStore  # lazily: redis-py is only needed when used

    if url.startswith(CLUSTER_SCHEME):
        return RedisStore.from_cluster_url(url, **options)  # type: ignore[arg-type]
    if url.startswith(SENTINEL_SCHEME):
        return RedisStore.from_sentinel_url(url, **options)  # type: ignore[arg-type]
    return RedisStore.from_url(url, **options)  # type: ignore[arg-type]
