"""The policy's `detectors:` section -> DetectorsSection (settings + identity key). See `register`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from yaml.nodes import Node, ScalarNode, SequenceNode

from ..policy.model import KeySpec
from ..policy.registry import Registry, Section, SectionContext
from . import SIGNAL_NAMES
from .config import DetectorConfig

_FIELDS = {f.name: f.default for f in dataclasses.fields(DetectorConfig)}


@dataclass(frozen=True, slots=True)
class DetectorsSection:
    config: DetectorConfig
    key: KeySpec  # what an identity is (`stack`: TLS stack + UA class, `ip`, ...)


def compile_detectors(sc: SectionContext, node: Node) -> DetectorsSection | None:
    """`detectors: {key: stack, sequence_full: 20, distinct_window_s: 10m, ...}`; `enabled: false` turns all off."""
    r = sc.reader
    f = r.mapping(node, "detectors", set(_FIELDS) | {"key", "enabled"})
    if f is None:
        return None
    if "enabled" in f and r.boolean(f["enabled"][1], "detectors.enabled") is False:
        return None
    key = sc.read_key(f["key"][1], "detectors.key") if "key" in f else sc.default_key
    values: dict[str, Any] = {}
    for name, (_, vnode) in f.items():
        if name in ("key", "enabled"):
            continue
        default = _FIELDS[name]
        what = f"detectors.{name}"
        if name.endswith("_s"):
            value: Any = r.duration(vnode, what)
        elif isinstance(default, bool):
            value = r.boolean(vnode, what)
        elif isinstance(default, int):
            value = r.integer(vnode, what, 0)
        elif isinstance(default, float):
            value = r.number(vnode, what)
        elif name == "probe_statuses" and isinstance(vnode, SequenceNode):
            codes = [r.integer(n, what, 100, 599) for n in vnode.value]
            value = ",".join(str(c) for c in codes if c is not None)
        elif isinstance(vnode, ScalarNode):
            value = str(vnode.value)
        else:
            r.error(vnode, f"{what} must be a {type(default).__name__}")
            continue
        if value is not None:
            values[name] = float(value) if isinstance(default, float) else value
    try:
        config = DetectorConfig.from_mapping(values)
    except (ValueError, TypeError) as exc:
        r.error(node, f"detectors: {exc}")
        return None
    if key is None:
        return None
    return DetectorsSection(config, key)


DETECTORS: Section[DetectorsSection] = Section("detectors", compile_detectors)


def register(registry: Registry) -> None:
    """The `detectors:` section. Its signals reach scores through the engine's observe stage."""
    registry.add_section(DETECTORS)
    registry.add_signals(SIGNAL_NAMES, needs_section=DETECTORS.name)
