"""The only part of ScrapeShield that imports mitmproxy: flows in, decisions applied."""
