"""YAML policy -> CompiledPolicy. Every error is collected and reported as `file:line:col: what`."""
from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from ..challenge.config import ChallengeConfig
from ..decision import Action
from ..gcra import parse_rate
from ..netaddr import EMPTY_CIDRS, CidrSet
from .errors import PolicyError, PolicyInvalid
from .keys import build_key
from .loader import (
    DEFAULT_LIMITS,
    CompileBudgetExceeded,
    LoadLimits,
    check_size,
    collector_paused,
    compose_policy,
    dismantle,
    read_policy_file,
)
from .matchers import all_of, always, compile_conditions, compile_match
from .model import BucketDef, CompiledPolicy, KeySpec, Rule, ScoreDef, Threshold
from .nodes import Reader
from .plan import RulePlan
from .registry import CompileEnv, KeyContext, Registry, SectionContext
from .signals import unknown_signal_message

# The core's own top-level fields; packages add theirs as sections (see policy/registry.py).
TOP_FIELDS = (
    "version", "name", "monitor", "fail", "default_action", "trusted_proxies", "ip_prefix", "keys",
    "ip_lists", "state", "penalty_box", "log", "responses", "challenge", "rules", "scores",
)
RULE_FIELDS = (
    "name", "description", "match", "action", "limits", "exceed", "key", "delay_max", "ban", "monitor",
    "status", "difficulty", "no_js", "score",
)
DIRECT_ACTIONS = ("allow", "log", "block", "drop", "challenge", "throttle")
EXCEED_ACTIONS = ("throttle", "delay", "block", "drop", "challenge")
THRESHOLD_ACTIONS = ("log", "challenge", "throttle", "block", "drop")
MAX_IP_LIST_BYTES = 64 * 2**20  # an `ip_lists` file: about 3 million CIDRs


def compile_file(path: str, registry: Registry | None = None, limits: LoadLimits = DEFAULT_LIMITS) -> CompiledPolicy:
    return compile_bytes(read_policy_file(path, limits), path, registry, limits)


def compile_bytes(data: bytes, filename: str = "<policy>", registry: Registry | None = None,
                  limits: LoadLimits = DEFAULT_LIMITS) -> CompiledPolicy:
    """Compile a policy; `registry` is the language's extensions (default: the built-in packages).

    Within `limits` (size, YAML shape, compile time; see loader.py): CPU-bound, seconds for a
    multi-megabyte file, so a running shield calls it through loader.compile_off_loop."""
    if registry is None:
        from ..extensions import standard_registry  # the composition root sits above the compiler

        registry = standard_registry()
    with collector_paused():
        return _compile_bytes(data, filename, registry, limits)


def _compile_bytes(data: bytes, filename: str, registry: Registry, limits: LoadLimits) -> CompiledPolicy:
    deadline = time.monotonic() + limits.max_compile_seconds
    check_size(data, filename, limits)
    r = Reader(filename, deadline)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyInvalid([PolicyError(filename, 1, 1, f"policy is not UTF-8: {exc.reason}")]) from None
    root = compose_policy(text, filename, limits)
    if root is None:
        raise PolicyInvalid([PolicyError(filename, 1, 1, "policy is empty")])
    try:
        policy = _compile_root(r, root, filename, hashlib.sha256(data).hexdigest()[:16], registry)
    except CompileBudgetExceeded as exc:
        r.error(exc.node, f"compiling took longer than {limits.max_compile_seconds:g} s (the compile budget); "
                          "refused here")
        raise PolicyInvalid(r.errors[-1:]) from None
    finally:
        dismantle(root)
    if r.errors or policy is None:
        errors = sorted(r.errors, key=lambda e: (e.line, e.col))
        raise PolicyInvalid(errors or [PolicyError(filename, 1, 1, "invalid policy")])
    return policy


def _compile_root(r: Reader, root: Node, filename: str, version_hash: str,
                  registry: Registry) -> CompiledPolicy | None:
    top = r.mapping(root, "policy", (*TOP_FIELDS, *registry.sections))
    if top is None:
        return None
    policy_dir = os.path.dirname(os.path.abspath(filename)) if not filename.startswith("<") else os.getcwd()

    def get(name: str) -> Node | None:
        return top[name][1] if name in top else None

    version = get("version")
    if version is None:
        r.error(root, "missing required field 'version' (use: version: 1)")
    elif r.integer(version, "version") not in (1, None):
        r.error(version, "unsupported policy version (this ScrapeShield reads version 1)")

    name = _opt(r, get("name"), r.string, "name", "policy")
    monitor = _opt(r, get("monitor"), r.boolean, "monitor", False)
    fail = get("fail")
    fail_closed = (r.choice(fail, "fail", ("open", "closed")) == "closed") if fail is not None else False
    default_node = get("default_action")
    default_action = Action(r.choice(default_node, "default_action", ("allow", "log", "block", "challenge"))
                            or "allow") \
        if default_node is not None else Action.ALLOW

    trusted = EMPTY_CIDRS
    if (tp := get("trusted_proxies")) is not None:
        trusted = r.cidr_list(tp, "trusted_proxies")

    v4, v6 = 24, 64
    if (ipp := get("ip_prefix")) is not None and (f := r.mapping(ipp, "ip_prefix", ("ipv4", "ipv6"))) is not None:
        if "ipv4" in f:
            v4 = r.integer(f["ipv4"][1], "ip_prefix.ipv4", 8, 32) or v4
        if "ipv6" in f:
            v6 = r.integer(f["ipv6"][1], "ip_prefix.ipv6", 16, 128) or v6
    kctx = KeyContext(v4, v6)

    ip_lists: dict[str, CidrSet] = {}
    if (il := get("ip_lists")) is not None and (f := r.mapping(il, "ip_lists")) is not None:
        for list_name, (_, vnode) in f.items():
            ip_lists[list_name] = _ip_list(r, vnode, f"ip_lists.{list_name}", policy_dir)
    parts = registry.key_parts
    named_keys: dict[str, KeySpec] = {"ip": build_key(("ip",), kctx, parts),
                                      "prefix": build_key(("prefix",), kctx, parts)}
    if (kn := get("keys")) is not None and (f := r.mapping(kn, "keys")) is not None:
        for key_name, (knode, vnode) in f.items():
            # `ip` too: a named key `ip` would silently become every rule's default key.
            if key_name in parts and ":" not in key_name:
                r.error(knode, f"keys: {key_name!r} is a built-in key part; choose another name")
                continue
            if (spec := _key(r, vnode, f"keys.{key_name}", kctx, {}, registry)) is not None:
                named_keys[key_name] = spec

    # Sections before rules: a condition may refer to one (`good_bot` needs `goodbots:`).
    section_ctx = SectionContext(r, policy_dir, lambda n, what: _key(r, n, what, kctx, named_keys, registry),
                                 named_keys["ip"])
    sections: dict[str, object] = {}
    for section in registry.sections.values():
        if (node := get(section.name)) is not None and (value := section.compile(section_ctx, node)) is not None:
            sections[section.name] = value
    env = CompileEnv(ip_lists, registry, sections)

    max_keys, hash_ips = 1_000_000, False
    if (st := get("state")) is not None and (f := r.mapping(st, "state", ("max_keys",))) is not None \
            and "max_keys" in f:
        max_keys = r.integer(f["max_keys"][1], "state.max_keys", 1) or max_keys
    if (lg := get("log")) is not None and (f := r.mapping(lg, "log", ("hash_ips",))) is not None \
            and "hash_ips" in f:
        hash_ips = bool(r.boolean(f["hash_ips"][1], "log.hash_ips"))

    ban_action = Action.BLOCK
    if (pb := get("penalty_box")) is not None and (f := r.mapping(pb, "penalty_box", ("action",))) is not None \
            and "action" in f:
        ban_action = Action(r.choice(f["action"][1], "penalty_box.action", ("block", "drop")) or "block")

    block_status, throttle_status = 403, 429
    rs = get("responses")
    if rs is not None and (f := r.mapping(rs, "responses", ("block_status", "throttle_status"))) is not None:
        if "block_status" in f:
            block_status = r.integer(f["block_status"][1], "responses.block_status", 400, 599) or block_status
        if "throttle_status" in f:
            throttle_status = (r.integer(f["throttle_status"][1], "responses.throttle_status", 400, 599)
                               or throttle_status)

    challenge = _challenge(r, get("challenge"))

    rules: list[Rule] = []
    seen: dict[str, Node] = {}
    if (rn := get("rules")) is not None:
        for item in r.sequence(rn, "rules", scalar_ok=False):
            rule = _rule(r, item, env, named_keys, kctx, seen)
            if rule is not None:
                rules.append(rule)
    rule_needs = frozenset(env.needs)  # score thresholds' `when:` run after the store: they need nothing early

    scores: list[ScoreDef] = []
    score_names: set[str] = set()
    if (sn := get("scores")) is not None:
        for item in r.sequence(sn, "scores", scalar_ok=False):
            score = _score(r, item, named_keys, kctx, env)
            if score is not None:
                if score.name in score_names:
                    r.error(item, f"scores: duplicate score name {score.name!r}")
                score_names.add(score.name)
                scores.append(score)
    for rule in rules:
        for sname, _ in rule.scores:
            if sname not in score_names:
                r.error(seen[rule.name],
                        f"rule {rule.name!r}: adds to score {sname!r}, which is not defined under scores")

    ban_keys: dict[tuple[str, ...], KeySpec] = {}
    for rule in rules:
        if rule.ban_for and rule.key is not None:
            ban_keys.setdefault(rule.key.parts, rule.key)
    for score in scores:
        if any(t.ban_for for t in score.thresholds):
            ban_keys.setdefault(score.key.parts, score.key)
    # An operator bans or allow-lists by hand (control API) by address, network or any key the
    # policy counts by: the penalty box is asked about each of them on every request.
    for spec in (named_keys["ip"], named_keys["prefix"], *named_keys.values(),
                 *(rule.key for rule in rules if rule.key is not None), *(score.key for score in scores)):
        ban_keys.setdefault(spec.parts, spec)

    if r.errors:
        return None
    return CompiledPolicy(
        source=filename, version_hash=version_hash, name=name, monitor=monitor, fail_closed=fail_closed,
        default_action=default_action, trusted_proxies=trusted, ipv4_prefix=v4, ipv6_prefix=v6,
        rules=tuple(rules), ban_keys=tuple(ban_keys.values()), ban_action=ban_action, scores=tuple(scores),
        block_status=block_status, throttle_status=throttle_status, max_keys=max_keys, hash_ips=hash_ips,
        challenge=challenge, plan=RulePlan(tuple(rules)), sections=sections,
        signal_sources=tuple(registry.signal_sources), needs=rule_needs,
    )


def _opt(r: Reader, node: Node | None, fn: Any, what: str, default: Any) -> Any:
    if node is None:
        return default
    value = fn(node, what)
    return default if value is None else value


def _ip_list(r: Reader, node: Node, what: str, policy_dir: str) -> CidrSet:
    """Inline CIDRs, or `{file: ranges.txt}` (one CIDR per line, `#` comments), relative to the policy."""
    if isinstance(node, MappingNode):
        f = r.mapping(node, what, ("file",))
        if not f or "file" not in f:
            return EMPTY_CIDRS
        fnode = f["file"][1]
        rel = r.string(fnode, f"{what}.file")
        if rel is None:
            return EMPTY_CIDRS
        path = os.path.join(policy_dir, rel)
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_IP_LIST_BYTES + 1)  # bounded: `file: /dev/zero` must not hang a reload
        except OSError as exc:
            r.error(fnode, f"{what}.file: cannot read {rel!r}: {exc.strerror}")
            return EMPTY_CIDRS
        if len(raw) > MAX_IP_LIST_BYTES:
            r.error(fnode, f"{what}.file: {rel!r} is larger than {MAX_IP_LIST_BYTES // 2**20} MiB")
            return EMPTY_CIDRS
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            r.error(fnode, f"{what}.file: {rel!r} is not UTF-8: {exc.reason}")
            return EMPTY_CIDRS
        lines = [(i, ln.split("#", 1)[0].strip()) for i, ln in enumerate(content.splitlines(), 1)]
        return r.cidrs((fnode, text, f"{what}.file: {rel}:{lineno}") for lineno, text in lines if text)
    return r.cidr_list(node, what)


def _key(r: Reader, node: Node, what: str, kctx: KeyContext, named: dict[str, KeySpec],
         registry: Registry) -> KeySpec | None:
    """A named key (`stack`), a part (`ip`), `prefix+header:x-api-key`, or a list of parts."""
    if isinstance(node, ScalarNode) and node.value in named:
        return named[node.value]
    raw = r.strings(node, what)
    parts: list[str] = []
    for text in raw:
        parts.extend(p.strip() for p in text.split("+"))
    if not parts:
        r.error(node, f"{what}: a key needs at least one part")
        return None
    ok = True
    known = registry.key_parts
    for part in parts:
        kind, colon, arg = part.partition(":")
        if kind not in known:
            r.error(node, f"{what}: unknown key part {part!r} "
                          f"(known: {', '.join(sorted(known))}, or a name under keys)")
            ok = False
        elif known[kind].needs_argument and not arg:
            r.error(node, f"{what}: key part {kind!r} needs a name, e.g. {kind}:x-api-key")
            ok = False
        elif not known[kind].needs_argument and colon:
            r.error(node, f"{what}: key part {kind!r} takes no argument")
            ok = False
        elif (check := known[kind].check) is not None and (why := check(arg)) is not None:
            r.error(node, f"{what}: {why}")
            ok = False
    return build_key(tuple(parts), kctx, known) if ok else None


def _challenge(r: Reader, node: Node | None) -> ChallengeConfig:
    d = ChallengeConfig()
    if node is None:
        return d
    fields = ("difficulty", "status", "cookie_ttl", "challenge_ttl", "wait_seconds", "ipv4_prefix", "ipv6_prefix")
    f = r.mapping(node, "challenge", fields)
    if f is None:
        return d
    kw: dict[str, Any] = {}
    if "difficulty" in f:
        kw["difficulty"] = r.integer(f["difficulty"][1], "challenge.difficulty", 1, 32) or d.difficulty
    if "status" in f:
        kw["status"] = r.integer(f["status"][1], "challenge.status", 200, 599) or d.status
    if "cookie_ttl" in f:
        kw["cookie_ttl"] = int(r.duration(f["cookie_ttl"][1], "challenge.cookie_ttl") or d.cookie_ttl)
    if "challenge_ttl" in f:
        kw["challenge_ttl"] = r.duration(f["challenge_ttl"][1], "challenge.challenge_ttl") or d.challenge_ttl
    if "wait_seconds" in f:
        kw["wait_seconds"] = max(1, int(r.duration(f["wait_seconds"][1], "challenge.wait_seconds") or d.wait_seconds))
    if "ipv4_prefix" in f:
        kw["v4_bits"] = r.integer(f["ipv4_prefix"][1], "challenge.ipv4_prefix", 8, 32) or d.v4_bits
    if "ipv6_prefix" in f:
        kw["v6_bits"] = r.integer(f["ipv6_prefix"][1], "challenge.ipv6_prefix", 16, 128) or d.v6_bits
    return ChallengeConfig(**kw)


def _uid(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=5).hexdigest()


def _rule(r: Reader, node: Node, env: CompileEnv, named: dict[str, KeySpec], kctx: KeyContext,
          seen: dict[str, Node]) -> Rule | None:
    f = r.mapping(node, "rule", RULE_FIELDS)
    if f is None:
        return None
    if "name" not in f:
        r.error(node, "rule: missing required field 'name'")
        return None
    name = r.string(f["name"][1], "rule name")
    if name is None:
        return None
    if name in seen:
        r.error(f["name"][1], f"rule: duplicate rule name {name!r}")
    seen[name] = node
    what = f"rule {name!r}"

    conditions = compile_conditions(r, f["match"][1], env) if "match" in f else ()
    match = all_of([p for _, p in conditions]) if conditions is not None else always
    key = _key(r, f["key"][1], f"{what}: key", kctx, named, env.registry) if "key" in f else named["ip"]

    buckets: list[BucketDef] = []
    if "limits" in f:
        items = r.sequence(f["limits"][1], f"{what}: limits")
        for i, item in enumerate(items):
            text = r.string(item, f"{what}: limits")
            if text is None:
                continue
            try:
                limit = parse_rate(text)
            except ValueError as exc:
                r.error(item, f"{what}: {exc}")
                continue
            keyparts = key.parts if key else ()
            buckets.append(BucketDef(_uid(name, keyparts, limit), limit, f"{name}/{i}"))
        if not items:
            r.error(f["limits"][0], f"{what}: limits needs at least one rate like '10/s burst 20'")

    action: Action | None = None
    if "action" in f:
        if "limits" in f:
            r.error(f["action"][0], f"{what}: a rule has either 'action' or 'limits' "
                                    "(use 'exceed' for what happens over the limit)")
        elif (a := r.choice(f["action"][1], f"{what}: action", DIRECT_ACTIONS)) is not None:
            action = Action(a)
    elif "limits" not in f:
        r.error(node, f"{what}: needs an 'action' or 'limits'")

    exceed = Action.THROTTLE
    if "exceed" in f:
        if "limits" not in f:
            r.error(f["exceed"][0], f"{what}: 'exceed' only applies to a rule with 'limits'")
        elif (e := r.choice(f["exceed"][1], f"{what}: exceed", EXCEED_ACTIONS)) is not None:
            exceed = Action(e)

    ban_for = 0.0
    if "ban" in f:
        bnode = f["ban"][1]
        if isinstance(bnode, MappingNode):
            bf = r.mapping(bnode, f"{what}: ban", ("for",))
            ban_for = (r.duration(bf["for"][1], f"{what}: ban.for") or 0.0) if bf and "for" in bf else 0.0
        else:
            ban_for = r.duration(bnode, f"{what}: ban") or 0.0
        if action in (Action.ALLOW, Action.LOG):
            r.error(f["ban"][0],
                    f"{what}: ban needs a rule that refuses (limits, or action block/drop/throttle/challenge)")

    scores: list[tuple[str, float]] = []
    if "score" in f and (sf := r.mapping(f["score"][1], f"{what}: score")) is not None:
        for sname, (_, vnode) in sf.items():
            delta = r.number(vnode, f"{what}: score.{sname}")
            if delta is not None:
                scores.append((sname, delta))

    return Rule(
        name=name, match=match, action=action, buckets=tuple(buckets), exceed=exceed, key=key,
        delay_max=_opt(r, f.get("delay_max", (None, None))[1], r.duration, f"{what}: delay_max", 2.0),
        ban_for=ban_for,
        monitor=_opt(r, f.get("monitor", (None, None))[1], r.boolean, f"{what}: monitor", False),
        status=_opt(r, f.get("status", (None, None))[1], lambda n, w: r.integer(n, w, 200, 599), f"{what}: status", 0),
        difficulty=_opt(r, f.get("difficulty", (None, None))[1], lambda n, w: r.integer(n, w, 1, 32),
                        f"{what}: difficulty", 0),
        no_js=_opt(r, f.get("no_js", (None, None))[1], r.boolean, f"{what}: no_js", False),
        scores=tuple(scores), conditions=conditions or (),
    )


def _score(r: Reader, node: Node, named: dict[str, KeySpec], kctx: KeyContext,
           env: CompileEnv) -> ScoreDef | None:
    registry = env.registry
    f = r.mapping(node, "score", ("name", "key", "half_life", "weights", "thresholds"))
    if f is None:
        return None
    if "name" not in f:
        r.error(node, "score: missing required field 'name'")
        return None
    name = r.string(f["name"][1], "score name") or "?"
    what = f"score {name!r}"
    key = _key(r, f["key"][1], f"{what}: key", kctx, named, registry) if "key" in f else named["ip"]
    half_life = _opt(r, f.get("half_life", (None, None))[1], r.duration, f"{what}: half_life", 600.0)
    if half_life <= 0:
        r.error(f["half_life"][1], f"{what}: half_life must be positive")
    weights: list[tuple[str, float]] = []
    if "weights" in f and (wf := r.mapping(f["weights"][1], f"{what}: weights")) is not None:
        for signal, (knode, vnode) in wf.items():
            if (unknown := unknown_signal_message(signal, registry.signals)) is not None:
                r.error(knode, f"{what}: weights: {unknown}")
                continue
            w = r.number(vnode, f"{what}: weights.{signal}")
            if w is not None:
                weights.append((signal, w))
    thresholds: list[Threshold] = []
    if "thresholds" in f:
        for item in r.sequence(f["thresholds"][1], f"{what}: thresholds", scalar_ok=False):
            tf = r.mapping(item, f"{what}: threshold", ("at", "action", "difficulty", "ban", "status", "when"))
            if tf is None:
                continue
            if "at" not in tf or "action" not in tf:
                r.error(item, f"{what}: a threshold needs 'at' and 'action'")
                continue
            at = r.number(tf["at"][1], f"{what}: threshold at")
            act = r.choice(tf["action"][1], f"{what}: threshold action", THRESHOLD_ACTIONS)
            if at is None or act is None:
                continue
            thresholds.append(Threshold(
                at=at, action=Action(act),
                difficulty=_opt(r, tf.get("difficulty", (None, None))[1], lambda n, w: r.integer(n, w, 1, 32),
                                f"{what}: difficulty", 0),
                ban_for=_opt(r, tf.get("ban", (None, None))[1], r.duration, f"{what}: ban", 0.0),
                status=_opt(r, tf.get("status", (None, None))[1], lambda n, w: r.integer(n, w, 200, 599),
                            f"{what}: status", 0),
                # `when: {session: [absent, fresh]}`: the threshold acts on matching requests only.
                when=compile_match(r, tf["when"][1], env) if "when" in tf else None,
            ))
    if key is None:
        return None
    return ScoreDef(name, _uid("score", name, key.parts, half_life), key, half_life, tuple(weights),
                    tuple(sorted(thresholds, key=lambda t: t.at)))
