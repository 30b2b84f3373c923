"""ScrapeShield: an anti-scraping sidecar reverse proxy built on mitmproxy."""

__version__ = "0.2.0"

# The compiled hot modules (mypyc), when built and matching the sources; else the Python code. See accel.py.
from . import accel as _accel

_accel.install()
