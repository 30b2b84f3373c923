"""`python -m demo [scrapeshield run options]`: the demo shop on a free loopback port, and
`scrapeshield run --upstream <it>` in front of it. What `scripts/run` starts without --upstream."""
from __future__ import annotations

import asyncio
import sys
import threading

from scrapeshield.cli import main as scrapeshield_main

from .shop import DemoOrigin, start_demo_origin


class _ShopThread(threading.Thread):
    """The shop on an event loop of its own, so the shield's loop and signals stay its own."""

    def __init__(self) -> None:
        super().__init__(name="demo-shop", daemon=True)
        self.loop = asyncio.new_event_loop()
        self.origin: DemoOrigin | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.origin = self.loop.run_until_complete(start_demo_origin("127.0.0.1", 0))
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        if self.origin is not None:
            asyncio.run_coroutine_threadsafe(self.origin.stop(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)


def main(argv: list[str]) -> int:
    if "--upstream" in argv or any(a.startswith("--upstream=") for a in argv):
        print("python -m demo: the demo shop is the upstream; run `scrapeshield run --upstream URL` "
              "for an origin of your own", file=sys.stderr)
        return 2
    shop = _ShopThread()
    shop.start()
    shop.ready.wait(timeout=30)
    if shop.origin is None:
        print("python -m demo: the demo shop did not start", file=sys.stderr)
        return 1
    try:
        return scrapeshield_main(["run", "--upstream", shop.origin.url, *argv])
    finally:
        shop.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
