"""Token encoding: one accepted spelling per token, lengths checked before decoding."""
from __future__ import annotations

import pytest

from scrapeshield.challenge.binding import ClientBinding
from scrapeshield.challenge.clearance import issue_cookie, verify_cookie
from scrapeshield.challenge.keys import KeyRing
from scrapeshield.challenge.tokens import b64d, b64e, seal, unseal

KEYS = KeyRing.from_lines(["55" * 32])
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _with_low_bits_changed(text: str) -> list[str]:
    """Every other spelling of `text` that lenient base64 decodes to the same bytes."""
    last = ALPHABET.index(text[-1])
    unused = {2: 4, 3: 2}.get(len(text) % 4, 0)  # unused low bits of the last character
    variants = [text[:-1] + ALPHABET[(last & ~((1 << unused) - 1)) | low] for low in range(1 << unused)]
    return [v for v in variants if v != text]


def test_a_sealed_token_opens() -> None:
    assert unseal(KEYS, "t", seal(KEYS, "t", [1, "a"])) == [1, "a"]


def test_a_mac_with_changed_unused_low_bits_is_refused() -> None:
    # given a genuine token, whose 43-character MAC leaves 2 bits of its last character unused
    token = seal(KEYS, "t", [1, "a"])
    head, _, mac = token.rpartition(".")
    variants = _with_low_bits_changed(mac)
    assert len(variants) == 3
    for variant in variants:
        # when only those bits change, the bytes are the same, yet the token is refused
        assert unseal(KEYS, "t", f"{head}.{variant}") == "malformed"


def test_a_payload_with_changed_unused_low_bits_is_refused() -> None:
    for fields in ([1], [1, "ab"], ["abcd"]):
        token = seal(KEYS, "t", fields)
        kind, kid, payload, mac = token.split(".")
        for variant in _with_low_bits_changed(payload):
            assert unseal(KEYS, "t", f"{kind}.{kid}.{variant}.{mac}") in ("malformed", "bad_signature")


def test_a_cookie_with_a_non_canonical_mac_does_not_clear() -> None:
    binding = ClientBinding.of("192.0.2.1", "UA")
    cookie = issue_cookie(KEYS, binding, "r", 3600, 1000.0)
    head, _, mac = cookie.rpartition(".")
    assert verify_cookie(KEYS, cookie, binding, "r", 1000.0).ok
    for variant in _with_low_bits_changed(mac):
        assert verify_cookie(KEYS, f"{head}.{variant}", binding, "r", 1000.0).reason == "malformed"


@pytest.mark.parametrize("text", ["YQ=", "YQ==", "Y Q", "YQ\n", "Y+Q", "Y/Q", "YR", "A", "YQ$"])
def test_strict_decoding_refuses_every_other_spelling(text: str) -> None:
    with pytest.raises(ValueError):
        b64d(text)


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"abc", bytes(range(256))])
def test_strict_decoding_reads_what_encoding_writes(data: bytes) -> None:
    assert b64d(b64e(data)) == data


@pytest.mark.parametrize("mac", ["", "A" * 42, "A" * 44, "A" * 4000])
def test_a_mac_of_the_wrong_length_is_refused_before_decoding(mac: str) -> None:
    head = seal(KEYS, "t", [1]).rpartition(".")[0]
    assert unseal(KEYS, "t", f"{head}.{mac}") == "malformed"
