"""What the session end-to-end tests share: the session policy and a front proxy's address."""
from __future__ import annotations

FRONT_PROXY = "127.0.0.5"
CHROME_JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"
SESSION_POLICY = f"""
version: 1
trusted_proxies: [{FRONT_PROXY}/32]
keys:
  client: session_or:ip
session:
  record_budget: 2
  difficulty: {{base: 8, maximum: 10, net_unit: 100, stack_unit: 100}}
rules:
  - name: front-ja4
    match: {{ja4: [{CHROME_JA4}]}}
    action: block
  - name: gate
    match: {{path: [/user/*]}}
    action: challenge
    difficulty: 8
  - name: per-client
    match: {{path: [/]}}
    key: client
    limits: ["3/m"]
    exceed: throttle
"""
