"""`scrapeshield init DIR`: a starting point an operator edits -- the starter policy and a
challenge secret -- written into a configuration directory (e.g. /etc/scrapeshield)."""
from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

from . import builtin

POLICY_FILE = "policy.yaml"
SECRET_FILE = "challenge.keys"


def cmd_init(directory: str, force: bool = False) -> int:
    target = Path(directory)
    policy, secret = target / POLICY_FILE, target / SECRET_FILE
    existing = [p for p in (policy, secret) if p.exists()]
    if existing and not force:
        print(f"scrapeshield init: {', '.join(map(str, existing))} already exist(s); --force overwrites",
              file=sys.stderr)
        return 1
    try:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(builtin.policies_dir() / "starter.yaml", policy)
        _write_secret(secret)
    except OSError as exc:
        print(f"scrapeshield init: cannot write into {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {policy} (starts in monitor mode: edit it, then set monitor: false)")
    print(f"wrote {secret} (challenge secret, mode 600; give every replica the same file)")
    print(f"check it:  scrapeshield check --strict {policy}")
    print(f"run it:    scrapeshield run --upstream http://127.0.0.1:8000 --policy {policy} --secret-file {secret}")
    return 0


def _write_secret(path: Path) -> None:
    """A fresh 32-byte key, created 0600 so it is never readable by others, not even briefly."""
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write("# challenge/clearance secret: first line signs, every line verifies (docs/challenge.md)\n")
        out.write(secrets.token_hex(32) + "\n")
