"""A plain Scrapy spider for the demo shop, used by record.py to capture a real crawl.

    scrapy runspider tests/captures/shop_spider.py -a base=https://127.0.0.1:8080 \
        -s CLOSESPIDER_PAGECOUNT=300

Default Scrapy settings otherwise: 16 concurrent requests, no delay, no robots.txt. It starts at
the home page and at `/user/1` and follows product pages ("next" links) and profile links, as a
harvester of the shop's people would.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import scrapy
from scrapy.http import Response

FOLLOW = 'a[rel="next"]::attr(href), a[href^="/products/"]::attr(href), a[href^="/user/"]::attr(href)'


class ShopSpider(scrapy.Spider):
    name = "shop"

    def __init__(self, base: str = "https://127.0.0.1:8080", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = base.rstrip("/")

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for path in ("/", "/user/1"):
            yield scrapy.Request(self.base + path)

    def parse(self, response: Response, **kwargs: Any) -> Any:
        profile = response.css(".profile")
        if profile:
            yield {"name": profile.css(".name::text").get(), "phone": profile.css(".phone::text").get()}
        for href in response.css(FOLLOW).getall():
            yield response.follow(href, callback=self.parse)
