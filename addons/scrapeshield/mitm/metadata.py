"""Keys of what the live addon stores in `flow.metadata`; saved flows (`--save`) carry them to replay."""

DECISION_METADATA = "scrapeshield"  # the live addon's own decision, when the flow came through a shield
TLS_METADATA = "scrapeshield_tls"  # the connection's TLS fingerprint (a dict of TlsFingerprint fields)
XFF_METADATA = "scrapeshield_xff_prior"  # X-Forwarded-For values before the live addon appended the peer
RESERVED_METADATA = "scrapeshield_reserved"  # a request for the shield's own endpoints, answered in `request`
RID_METADATA = "scrapeshield_rid_prior"  # X-Request-Id values the client sent, before ours replaced them
