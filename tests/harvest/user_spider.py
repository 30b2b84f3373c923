"""A plain Scrapy spider that enumerates /user/1..count, for bench/harvest_eval.py (scenario e).

    scrapy runspider tests/harvest/user_spider.py -a base=http://127.0.0.1:8080 -a count=150 \
        -a bind=127.0.0.5 -s CLOSESPIDER_PAGECOUNT=150 -O items.jsonl:jsonlines

Default Scrapy settings (16 concurrent requests, no delay, its own User-Agent, retries of 429/5xx).
Two request meta keys, not settings: every status reaches the callback (so refusals are
recorded instead of dropped), and connections come from `bind` (Scrapy's `bindaddress` meta) so
one machine can play one client IP. One item per response: its status, Shield-Action and whether
it carried the profile record.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import scrapy
from scrapy.http import Response


class UserSpider(scrapy.Spider):
    name = "users"

    def __init__(self, base: str = "http://127.0.0.1:8080", count: str = "150", bind: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = base.rstrip("/")
        self.count = int(count)
        self.bind = bind

    async def start(self) -> AsyncIterator[scrapy.Request]:
        meta: dict[str, Any] = {"handle_httpstatus_all": True}
        if self.bind:
            meta["bindaddress"] = (self.bind, 0)
        for i in range(1, self.count + 1):
            yield scrapy.Request(f"{self.base}/user/{i}", meta=dict(meta), dont_filter=True)

    def parse(self, response: Response, **kwargs: Any) -> Any:
        action = response.headers.get(b"Shield-Action")
        kind = action.decode() if action else "other"
        if not action and response.status == 200 and response.css(".profile"):
            kind = "record"
        yield {"url": response.url, "status": response.status, "kind": kind}
