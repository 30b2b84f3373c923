"""Policy files an operator (or a compromised config pipeline) might hand the shield: alias bombs
and very large valid policies. Used by the abuse tests and the hardening benchmark."""
from __future__ import annotations


def alias_bomb(depth: int = 6, fanout: int = 9) -> str:
    """A valid policy of a few hundred bytes: nested `any:` conditions, each level one definition
    and `fanout - 1` aliases of the level below, so `fanout**depth` conditions once expanded."""
    node = "&a0 {path: /a}"
    for level in range(1, depth + 1):
        refs = ", ".join([f"*a{level - 1}"] * (fanout - 1))
        node = f"&a{level} {{any: [{node}, {refs}]}}"
    return f"version: 1\nrules:\n  - name: bomb\n    action: block\n    match: {node}\n"


def large_policy(target_bytes: int, *, name: str = "large") -> str:
    """A valid policy of about `target_bytes`: many rules of the usual shapes."""
    head = ["version: 1", f"name: {name}", "fail: open", "rules:"]
    out = "\n".join(head) + "\n"
    parts = [out]
    size, i = len(out), 0
    while size < target_bytes:
        rule = (
            f"  - name: rule-{i}\n"
            f"    match:\n"
            f"      path: [/section-{i}/*, /alt-{i}/*/items]\n"
            f"      method: [GET, HEAD]\n"
            f"      header: {{x-client-{i % 50}: true}}\n"
            f"    limits: [\"{1 + i % 20}/s burst {5 + i % 30}\"]\n"
            f"    exceed: throttle\n"
        )
        parts.append(rule)
        size += len(rule)
        i += 1
    return "".join(parts)
