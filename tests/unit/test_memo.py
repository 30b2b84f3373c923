"""memo.remember: the one bound every hot-path memo table keeps."""
from __future__ import annotations

from scrapeshield import netaddr
from scrapeshield.memo import remember


def test_remember_stores_and_returns_the_value() -> None:
    memo: dict[str, int] = {}
    assert remember(memo, "a", 1, 3) == 1
    assert memo == {"a": 1}


def test_a_full_table_is_emptied_before_the_next_entry() -> None:
    memo: dict[int, int] = {}
    for i in range(10):
        remember(memo, i, i * i, 4)
        assert len(memo) <= 4
    assert memo == {8: 64, 9: 81}  # emptied at 4 entries (after 7), then 8 and 9


def test_a_hot_path_memo_stays_bounded() -> None:
    table, limit = netaddr._PREFIXES, netaddr._MAX_PREFIXES
    table.clear()
    for i in range(limit + 100):
        netaddr.cached_ip_prefix(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 24, 64)
        assert len(table) <= limit
    assert len(table) == 100  # emptied once, at the limit
    assert netaddr.cached_ip_prefix("10.1.2.3", 24, 64) == "10.1.2.0/24"
