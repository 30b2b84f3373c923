"""The signal names a score's `weights:` may use, and what to say about any other name.

A misspelled weight (`sequencial_ids`) would otherwise compile and never add anything. The names
are declared by the packages that produce them (`Registry.add_signals`), each with the policy
section that must be present for it to fire.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping

from .registry import Registry


def known_signals(registry: Registry | None = None) -> Mapping[str, str | None]:
    """signal name -> the policy section it needs (None: always produced)."""
    if registry is None:
        from ..extensions import standard_registry

        registry = standard_registry()
    return registry.signals


def unknown_signal_message(name: str, known: Mapping[str, str | None]) -> str | None:
    """None for a known signal; else what to tell the operator, with the closest name."""
    if name in known:
        return None
    hint = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    more = f" (did you mean {hint[0]!r}?)" if hint else " (the signal names are listed in docs/policy.md, Scores)"
    return f"unknown signal {name!r}{more}"
