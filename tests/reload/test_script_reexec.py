"""`mitmdump -s addons/shield.py` re-executes the script on change: what a new addon object finds (in-process).

The real-process version is in test_hot_reload.py; this one looks inside the runtime.
"""
from __future__ import annotations

import os
from pathlib import Path

from mitmproxy.test import taddons

from scrapeshield.mitm.addon import ShieldAddon


def _configure(addon: ShieldAddon, policy: Path) -> None:
    with taddons.context(addon) as tctx:
        tctx.configure(addon, scrapeshield_policy=str(policy), scrapeshield_admin="",
                       scrapeshield_decision_log=os.devnull, scrapeshield_reload_interval=0)


async def test_a_re_executed_script_gets_the_same_runtime_and_the_old_addon_leaves_it(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nname: reexec\nrules: []\n")
    first = ShieldAddon()
    _configure(first, policy)
    first.running()
    runtime = first.runtime
    assert runtime is not None and runtime.status_sources.count(first) == 1

    # What mitmproxy does on re-execution: `done` on the old addon, then load/configure/running on a new one.
    first.done()
    second = ShieldAddon()
    _configure(second, policy)
    second.running()

    assert second.runtime is runtime  # same engine, store and buckets
    assert first not in runtime.status_sources and runtime.status_sources.count(second) == 1
    await runtime.stop()
