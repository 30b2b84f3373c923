"""ScrapeShield: an anti-scraping sidecar reverse proxy built on mitmproxy."""

__version__ = "0.2.0"
