"""State backends. `open_store(url)` picks one from a URL: `memory://`, `redis://...` (also
`rediss://`, `unix://`) or `redis+cluster://host:port,host:port,...`."""
from __future__ import annotations

from .base import Batch, BatchResult, BucketCheck, ScoreUpdate, Store, StoreError
from .memory import MemoryStore

__all__ = ["Batch", "BatchResult", "BucketCheck", "MemoryStore", "ScoreUpdate", "Store", "StoreError", "open_store"]


def open_store(url: str | None, **options: object) -> Store:
    if not url or url.startswith("memory:"):
        return MemoryStore(**{k: v for k, v in options.items() if k == "max_keys"})  # type: ignore[arg-type]
    from .redis import CLUSTER_SCHEME, RedisStore  # imported lazily: redis-py is only needed when used

    if url.startswith(CLUSTER_SCHEME):
        return RedisStore.from_cluster_url(url, **options)  # type: ignore[arg-type]
    if url.startswith("redis+sentinel://"):
        raise ValueError("store URL redis+sentinel://...: Sentinel is not supported yet; use redis://"
                         " (the primary, e.g. behind a Sentinel-aware proxy) or redis+cluster://")
    return RedisStore.from_url(url, **options)  # type: ignore[arg-type]
