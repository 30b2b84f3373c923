"""What `scrapeshield run` (or `mitmdump -s`) configures the running shield with."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuntimeConfig:
    policy_path: str
    store_url: str = "memory://"
    admin: str = "127.0.0.1:9090"  # "" disables the admin server
    decision_log: str = "-"
    shadow_policy_path: str = ""
    reload_interval: float = 1.0  # seconds between stat() polls; 0 disables polling
    store_timeout: float = 1.0
    secret_file: str = ""  # challenge/clearance keys; else $SCRAPESHIELD_CHALLENGE_KEYS; else ephemeral
    admin_token_file: str = ""  # control API bearer token; else $SCRAPESHIELD_ADMIN_TOKEN; else the API is off
