"""The signals a score's `weights:` can name, and which policy section must exist for each to fire.

A misspelled weight (`sequencial_ids`) would otherwise compile and never add anything, so every
weight must name a signal from this catalogue. The fingerprint and detector packages produce the
built-in signals; another signal source adds its names with `register_signals`.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

_EXTRA: dict[str, str | None] = {}


def register_signals(names: Iterable[str], needs_section: str | None = None) -> None:
    """Make `names` weighable; `needs_section` is the top-level policy section that makes them fire."""
    for name in names:
        _EXTRA[name] = needs_section


def known_signals() -> dict[str, str | None]:
    """signal name -> the policy section it needs (None: always produced)."""
    from ..detectors import SIGNAL_NAMES
    from ..fingerprint import SIGNALS, TLS_FAMILIES, UA_KINDS

    out: dict[str, str | None] = dict.fromkeys(SIGNALS)
    out.update(dict.fromkeys(f"ua_class:{k}" for k in UA_KINDS))
    out.update(dict.fromkeys(f"tls_family:{f}" for f in TLS_FAMILIES))
    out["unverified_crawler"] = None
    out["good_bot"] = "goodbots"
    out.update(dict.fromkeys(SIGNAL_NAMES, "detectors"))
    try:  # the session package, where it is part of the build
        from ..session.state import SIGNALS as SESSION_SIGNALS  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        out.update(dict.fromkeys(SESSION_SIGNALS, "session"))
    out.update(_EXTRA)
    return out


def unknown_signal_message(name: str) -> str | None:
    """None for a known signal; else what to tell the operator, with the closest names."""
    known = known_signals()
    if name in known:
        return None
    hint = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    more = f" (did you mean {hint[0]!r}?)" if hint else " (the signal names are listed in docs/policy.md, Scores)"
    return f"unknown signal {name!r}{more}"
