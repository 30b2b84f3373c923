"""Shared by the operator-facing tests."""
from __future__ import annotations

TOKEN = "test-admin-token-0123456789"  # the control API token the test shields are started with
