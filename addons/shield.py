"""Entry script for stock mitmproxy:

    mitmdump -s addons/shield.py --mode reverse:http://127.0.0.1:8000 \
        --set scrapeshield_policy=policies/default.yaml --set block_global=false \
        --set connection_strategy=lazy --set keep_host_header=true

mitmproxy re-executes this file when it changes; the shield's state lives in the imported
`scrapeshield.runtime` module, which is not re-executed, so buckets and bans survive.
"""
from scrapeshield.mitm.addon import ShieldAddon

addons = [ShieldAddon()]
