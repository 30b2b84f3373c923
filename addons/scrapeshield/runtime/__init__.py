"""The running shield apart from mitmproxy (see `shield.py` for how its parts fit together)."""
from .config import RuntimeConfig
from .gate import ChallengeGate
from .listeners import PolicyListener, StatusSource
from .shadow import ShadowRunner
from .shield import ShieldRuntime, shared_runtime
from .watcher import RACY_SECONDS, SETTLE_SECONDS, PolicyWatcher

__all__ = ["RACY_SECONDS", "SETTLE_SECONDS", "ChallengeGate", "PolicyListener", "PolicyWatcher", "RuntimeConfig",
           "ShadowRunner", "ShieldRuntime", "StatusSource", "shared_runtime"]
