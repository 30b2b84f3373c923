"""Policy file watching and reload: poll the file, recompile when it changed, keep the last good
policy on any failure, and tell the listeners when a new one is live."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..policy.compiler import compile_bytes
from ..policy.errors import PolicyInvalid
from ..policy.lint import PolicyWarning, lint_bytes
from ..policy.loader import DEFAULT_LIMITS, compile_off_loop, lint_off_loop
from ..policy.model import CompiledPolicy
from .listeners import PolicyListener

log = logging.getLogger("scrapeshield")

SETTLE_SECONDS = 0.25  # a policy file modified more recently than this may still be being written
RACY_SECONDS = 2.0  # how long after a change a same-size rewrite may keep the same mtime (coarse clocks)


def stat_signature(path: str) -> tuple[Any, ...] | None:
    """What changes when the file changes: follows symlinks, so ConfigMap `..data` swaps count."""
    try:
        st = os.stat(path)
        return (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        return None


class PolicyWatcher:
    def __init__(self, path: str, policy: CompiledPolicy, on_failure: Callable[[], None] = lambda: None,
                 on_success: Callable[[CompiledPolicy], None] = lambda p: None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.monotonic = monotonic  # how long a file has been missing (file ages use mtimes)
        self.policy = policy  # the live one
        self.listeners: list[PolicyListener] = []
        self.loaded_at = time.time()
        self.last_reload_error: str | None = None
        self.reloads_ok = 0
        self.reloads_failed = 0
        self._on_failure = on_failure
        self._on_success = on_success
        self._signature = stat_signature(path)
        self._recheck = True  # the file may have changed between compiling it and this stat()
        self._content_hash: str | None = policy.version_hash
        self._missing_since: float | None = None  # when a poll first found the file gone
        self._reload_lock = asyncio.Lock()
        self._signal_reloads: set[asyncio.Task[bool]] = set()
        self.warnings: list[str] = []  # `scrapeshield check`'s warnings for the live policy

    def lint_at_start(self) -> None:
        """Log the live policy's lint warnings (what `check` prints) once, at start-up."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(DEFAULT_LIMITS.max_bytes + 1)
            self._log_warnings(lint_bytes(data, self.path))
        except Exception:  # the policy compiled: a lint failure is ours and must not stop the shield
            log.debug("policy lint failed", exc_info=True)

    def reload(self, force: bool = False) -> bool:
        """Recompile the policy if its file changed, here and now (start-up, tests, replay); the
        poll and SIGHUP of a running shield use `reload_off_loop`. The old policy stays on any failure.

        A poll (force=False) ignores a file written less than SETTLE_SECONDS ago, one that changes
        while it is read, and a freshly emptied one: an in-place save may be half done, and half a
        policy can be a valid one. Such a file is looked at again on the next poll. A file is reported
        missing once it has been gone for SETTLE_SECONDS: an editor that deletes and rewrites it, or a
        rename that a filesystem does not make atomic for lookups, leaves it gone for a moment. A file whose stat
        changed is recompiled even if its bytes did not (`touch` picks up an edited `ip_lists` file);
        `force` (SIGHUP) recompiles at once, whatever changed.
        """
        data = self._changed_policy_bytes(force)
        if data is None:
            return False
        try:
            policy = compile_bytes(data, self.path)
        except Exception as exc:  # PolicyInvalid, or a compiler bug: the proxy lives on
            return self._compile_failed(exc)
        installed = self._install(policy)
        try:
            self._log_warnings(lint_bytes(data, self.path))
        except Exception:  # pragma: no cover - as in lint_at_start
            log.debug("policy lint failed", exc_info=True)
        return installed

    async def reload_off_loop(self, force: bool = False) -> bool:
        """`reload`, compiling in the policy worker thread (policy/loader.py): requests and the
        admin port keep being answered while a large policy compiles. One reload at a time."""
        async with self._reload_lock:
            data = self._changed_policy_bytes(force)
            if data is None:
                return False
            try:
                policy = await compile_off_loop(data, self.path)
            except Exception as exc:  # as in reload()
                return self._compile_failed(exc)
            installed = self._install(policy)
            try:
                self._log_warnings(await lint_off_loop(data, self.path))
            except Exception:  # pragma: no cover - as in lint_at_start
                log.debug("policy lint failed", exc_info=True)
            return installed

    def reload_on_signal(self) -> None:
        """SIGHUP: `reload_off_loop(force=True)` as a task of the running loop."""
        task = asyncio.get_running_loop().create_task(self.reload_off_loop(force=True))
        self._signal_reloads.add(task)  # a reference until it is done: the loop keeps only weak ones
        task.add_done_callback(self._signal_reloads.discard)

    def _changed_policy_bytes(self, force: bool) -> bytes | None:
        """The policy file's bytes when they are to be compiled (see `reload`), else None."""
        path = self.path
        sig = stat_signature(path)
        if not force and sig == self._signature and not self._recheck:
            return None
        if sig is None:
            if not force:
                now = self.monotonic()
                if self._missing_since is None:
                    self._missing_since = now
                if now - self._missing_since < SETTLE_SECONDS:
                    return None  # looked at again on the next poll; the signature is kept
            self._signature, self._recheck, self._content_hash = None, False, None
            self._failed(f"{path}: file is missing; keeping the last good policy")
            return None
        self._missing_since = None
        age = time.time() - sig[3] / 1e9
        if not force and 0 <= age < SETTLE_SECONDS:
            return None
        try:
            with open(path, "rb") as fh:
                data = fh.read(DEFAULT_LIMITS.max_bytes + 1)  # compile_bytes refuses a longer file
        except OSError as exc:
            self._signature, self._recheck, self._content_hash = sig, False, None
            self._failed(f"{path}: cannot read policy: {exc.strerror or exc}; keeping the last good policy")
            return None
        if stat_signature(path) != sig:
            if force:
                log.warning("policy file %s changed while being read; it is read again on the next poll", path)
            return None
        if not data.strip() and not force and abs(age) < RACY_SECONDS:
            return None  # truncated by an in-place save whose writer has not written yet
        touched, self._signature = sig != self._signature, sig
        # Within RACY_SECONDS of its mtime, a same-size rewrite may keep the same stat signature
        # (coarse timestamps): until then, polls compare the content too.
        self._recheck = abs(age) < RACY_SECONDS
        digest = hashlib.sha256(data).hexdigest()[:16]  # what compile_bytes calls version_hash
        if not force and not touched and digest == self._content_hash:
            return None  # a content check of an unchanged file
        self._content_hash = digest  # a touched file is recompiled: that picks up edited ip_lists files
        return data

    def _compile_failed(self, exc: Exception) -> bool:
        if isinstance(exc, PolicyInvalid):
            self._failed(str(exc))
        else:  # pragma: no cover - a compiler bug must not kill the proxy
            self._failed(f"{self.path}: {type(exc).__name__}: {exc}")
        return False

    def _install(self, policy: CompiledPolicy) -> bool:
        path = self.path
        self.policy = policy
        for listener in self.listeners:
            listener.policy_changed(policy)
        self.loaded_at = time.time()
        self.last_reload_error = None
        self.reloads_ok += 1
        self._on_success(policy)
        log.info("policy reloaded from %s (version %s)", path, policy.version_hash)
        return True

    def _log_warnings(self, found: list[PolicyWarning]) -> None:
        """A policy that compiles may still not say what its author meant (policy/lint.py): say so
        in the log once per reload that changes the warnings, as `scrapeshield check` would."""
        lines = [str(w) for w in found]
        if lines != self.warnings:
            for line in lines:
                log.warning("policy %s", line)
        self.warnings = lines

    def _failed(self, message: str) -> None:
        self.reloads_failed += 1
        self._on_failure()
        if message != self.last_reload_error:  # once per distinct error, not once per poll
            log.error("policy reload rejected, keeping version %s:\n%s", self.policy.version_hash, message)
        self.last_reload_error = message

    async def watch(self, interval: float) -> None:
        """Poll every `interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload_off_loop()
            except Exception:  # pragma: no cover
                log.exception("policy watcher error")

    def status(self) -> dict[str, Any]:
        p = self.policy
        return {"file": p.source, "name": p.name, "version": p.version_hash, "loaded_at": self.loaded_at,
                "monitor": p.monitor, "rules": len(p.rules), "last_reload_error": self.last_reload_error,
                "warnings": list(self.warnings)}
