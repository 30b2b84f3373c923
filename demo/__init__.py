"""A demo origin for trying ScrapeShield out and for its tests; not part of the shipped package.

    python -m demo [scrapeshield run options]   # the demo shop, with the shield in front of it
    python -m demo.shop --port 8081             # the demo shop alone
"""
