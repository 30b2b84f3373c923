"""First-party session identity: a signed cookie every client gets on its first response, and
the signals only a session makes possible. Pure: nothing here imports mitmproxy.

- `cookie`: the codec (mint, strict decode, Set-Cookie header);
- `state`: per request, which session a client presents, what to set, the session counters
  kept in the store and the signals derived from them;
- `difficulty`: adaptive proof-of-work difficulty from recent mints and solves;
- `policy`: the `session:` policy section, the `session` key parts and conditions.

docs/sessions.md describes the design and every signal's false-positive story.
"""
