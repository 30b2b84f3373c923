"""The policies and good-bot ranges shipped inside the package, referred to by name.

The files live once, in the repository's `policies/` folder; `scrapeshield/policies` is a
symlink to it in the source tree and a real folder in the wheel (setuptools follows the link
when it copies package data). So `goodbots: builtin` and `--policy builtin:default` find the
same bytes in a checkout, an editable install and a wheel installed anywhere.
"""
from __future__ import annotations

from pathlib import Path

PREFIX = "builtin:"
GOODBOTS = "builtin"  # `goodbots: builtin` in a policy

_ROOT = Path(__file__).resolve().parent / "policies"


def policies_dir() -> Path:
    return _ROOT


def goodbots_dir() -> Path:
    return _ROOT / "goodbots"


def policy_names() -> list[str]:
    """`default`, `starter`, `examples/api`, ...: every shipped policy, by the name `builtin:` takes."""
    return sorted(str(p.relative_to(_ROOT).with_suffix("")) for p in _ROOT.rglob("*.yaml")
                  if p.parent.name != "goodbots")


def resolve_policy(text: str) -> str:
    """`builtin:NAME` -> the shipped file's path; anything else is a path and passes through."""
    if not text.startswith(PREFIX):
        return text
    name = text[len(PREFIX):].removesuffix(".yaml")
    if name not in policy_names():
        raise LookupError(f"no built-in policy {name!r} (built-in: {', '.join(policy_names())})")
    return str(_ROOT / f"{name}.yaml")
