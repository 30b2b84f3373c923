"""detectors/strength.py: the stable hash every detector keys on, and its memo."""
from __future__ import annotations

from hashlib import blake2b

from hypothesis import given, settings
from hypothesis import strategies as st

from scrapeshield.detectors import strength
from scrapeshield.detectors.strength import MEMO_SIZE, stable_hash, unmemoised_hash


def blake2b_32(text: str) -> int:
    """The hash as first written: what replays and shared logs were recorded with."""
    return int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "little")


@settings(max_examples=500)
@given(st.text(st.characters(exclude_categories=())))  # lone surrogates too (paths decoded with surrogateescape)
def test_the_stable_hash_is_the_first_four_bytes_of_blake2b_of_the_utf8_text(text: str) -> None:
    assert stable_hash(text) == blake2b_32(text)
    assert stable_hash(text) == blake2b_32(text)  # and again, from the memo
    assert unmemoised_hash(text) == blake2b_32(text)


def test_a_record_path_is_hashed_without_filling_the_memo() -> None:
    strength._HASHES.clear()
    assert unmemoised_hash("/user/9001") == stable_hash("/user/9001") == blake2b_32("/user/9001")
    strength._HASHES.clear()
    unmemoised_hash("/user/9002")
    assert strength._HASHES == {}


def test_known_values_do_not_change_between_versions() -> None:
    # Pinned: replays, goldens and the shared logs of running replicas depend on them.
    assert stable_hash("/user/1001") == 0x765859F0
    assert stable_hash("") == 0x25CF7112
    assert stable_hash("/\udcff") == 0x95EEC5F5


def test_the_memo_stays_within_its_bound() -> None:
    for i in range(MEMO_SIZE + 10):
        assert stable_hash(f"/bound/{i}") == blake2b_32(f"/bound/{i}")
        assert len(strength._HASHES) <= MEMO_SIZE
