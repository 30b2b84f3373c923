"""`scrapeshield check`: compile each policy, lint the ones that compile, report as text or JSON.

Text: every error as `file:line:col: message`, every warning as `file:line:col: warning: message`,
then `file: ok (...)` for a policy that loads. JSON (`--format json`) is one document for CI:
`{"ok": bool, "strict": bool, "files": [{"file", "ok", "errors": [...], "warnings": [...], "policy"}]}`.
Exit 0 when every file loads (and, with --strict, has no warnings), else 1.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from .. import builtin
from .compiler import compile_file
from .errors import PolicyError, PolicyInvalid
from .lint import PolicyWarning, lint_file
from .registry import Registry


def _diagnostic(d: PolicyError | PolicyWarning, severity: str) -> dict[str, Any]:
    return {"file": d.file, "line": d.line, "col": d.col, "severity": severity, "message": d.message}


def check_one(name: str, registry: Registry | None = None) -> dict[str, Any]:
    """The check result of one policy (a path or builtin:NAME), as the JSON report holds it."""
    try:
        path = builtin.resolve_policy(name)
    except LookupError as exc:
        return {"file": name, "ok": False, "errors": [_diagnostic(PolicyError(name, 1, 1, exc.args[0]), "error")],
                "warnings": [], "policy": None}
    try:
        policy = compile_file(path, registry)
    except PolicyInvalid as exc:
        return {"file": path, "ok": False, "errors": [_diagnostic(e, "error") for e in exc.errors],
                "warnings": [], "policy": None}
    warnings = lint_file(path, registry)
    return {"file": path, "ok": True, "errors": [], "warnings": [_diagnostic(w, "warning") for w in warnings],
            "policy": {"name": policy.name, "version": policy.version_hash, "rules": len(policy.rules)}}


def cmd_check(files: list[str], strict: bool = False, fmt: str = "text", registry: Registry | None = None) -> int:
    results = [check_one(f, registry) for f in files]
    failed = any(not r["ok"] or (strict and r["warnings"]) for r in results)
    if fmt == "json":
        doc = {"ok": not failed, "strict": strict, "files": results}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 1 if failed else 0
    for r in results:
        for d in r["errors"]:
            print(f"{d['file']}:{d['line']}:{d['col']}: {d['message']}")
        for d in r["warnings"]:
            print(f"{d['file']}:{d['line']}:{d['col']}: warning: {d['message']}")
        if r["ok"]:
            p = r["policy"]
            note = f", {len(r['warnings'])} warning{'s' if len(r['warnings']) != 1 else ''}" if r["warnings"] else ""
            print(f"{r['file']}: ok ({p['rules']} rules, version {p['version']}{note})")
    return 1 if failed else 0
