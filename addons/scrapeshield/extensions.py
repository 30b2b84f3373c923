"""The policy language as shipped: the built-in packages, each adding itself through its `register`.

This is the one place that knows which packages extend the language. A deployment with a package
of its own builds `standard_registry()`, adds to it and passes it to `compile_file(..., registry)`.
"""
from __future__ import annotations

from functools import cache

from .detectors import policy as detectors_policy
from .fingerprint import front as fingerprint_front
from .fingerprint import policy as fingerprint_policy
from .policy import keys, matchers
from .policy.registry import Registry
from .session import policy as session_policy


def new_standard_registry() -> Registry:
    """A fresh registry with every built-in condition, key part, section and signal source."""
    registry = Registry()
    matchers.register(registry)
    keys.register(registry)
    fingerprint_policy.register(registry)
    detectors_policy.register(registry)
    fingerprint_front.register(registry)
    session_policy.register(registry)
    return registry


@cache
def standard_registry() -> Registry:
    """The shared built-in registry (built once; treat it as read-only, copy it to extend)."""
    return new_standard_registry()
