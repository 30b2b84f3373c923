"""KeyRing: where the HMAC secrets come from, and what is refused."""
from __future__ import annotations

import base64
import logging

import pytest

from scrapeshield.challenge.keys import KeyRing, KeyRingError, key_id

HEX_KEY = "ab" * 32
B64_KEY = base64.b64encode(b"\x01" * 32).decode()


def test_file_with_hex_and_base64_lines_loads_first_as_signing_key(tmp_path):
    path = tmp_path / "secrets"
    path.write_text(f"# current\n{HEX_KEY}\n\n{B64_KEY}  # previous\n")
    path.chmod(0o600)

    ring = KeyRing.from_file(path)

    assert ring.keys == (bytes.fromhex(HEX_KEY), b"\x01" * 32)
    assert ring.signing_id == key_id(bytes.fromhex(HEX_KEY))


def test_url_safe_base64_without_padding_is_accepted():
    raw = b"\xfb\xff" * 20
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    assert KeyRing.from_lines([text]).keys == (raw,)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(KeyRingError, match="cannot read challenge secrets"):
        KeyRing.from_file(tmp_path / "nope")


def test_short_secret_is_refused_with_its_position():
    with pytest.raises(KeyRingError, match=r"secret #2 is 16 bytes; at least 32"):
        KeyRing.from_lines([HEX_KEY, "cd" * 16], "keys.txt")


def test_garbage_secret_is_refused_with_its_line():
    with pytest.raises(KeyRingError, match=r"keys.txt:2: not a hex or base64 secret"):
        KeyRing.from_lines([HEX_KEY, "not a secret!"], "keys.txt")


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "secrets"
    path.write_text("# nothing yet\n")

    with pytest.raises(KeyRingError, match="no challenge secret"):
        KeyRing.from_file(path)


def test_environment_variable_holds_comma_separated_secrets():
    ring = KeyRing.from_env("SHIELD_KEYS", {"SHIELD_KEYS": f"{HEX_KEY}, {B64_KEY}"})

    assert len(ring.keys) == 2


def test_unset_environment_variable_is_a_clear_error():
    with pytest.raises(KeyRingError, match="SHIELD_KEYS is not set"):
        KeyRing.from_env("SHIELD_KEYS", {})


def test_world_readable_secret_file_is_warned_about(tmp_path, caplog):
    path = tmp_path / "secrets"
    path.write_text(HEX_KEY)
    path.chmod(0o644)

    with caplog.at_level(logging.WARNING):
        KeyRing.from_file(path)

    assert "chmod 600" in caplog.text


def test_generated_ring_warns_that_it_is_ephemeral(caplog):
    with caplog.at_level(logging.WARNING):
        ring = KeyRing.generate()

    assert len(ring.keys[0]) == 32
    assert "ephemeral" in caplog.text


def test_mac_checks_under_the_key_the_id_names():
    old, new = KeyRing.from_lines([B64_KEY]), KeyRing.from_lines([HEX_KEY, B64_KEY])
    kid, mac = old.sign(b"message")

    assert new.verify(kid, b"message", mac)
    assert not new.verify(kid, b"messagE", mac)
    assert not KeyRing.from_lines([HEX_KEY]).verify(kid, b"message", mac)


def test_a_mac_is_the_hmac_sha256_of_the_domain_and_message_under_the_key_however_often_it_is_made():
    import hashlib
    import hmac

    old, new = b"o" * 32, b"n" * 32
    ring = KeyRing((new, old))
    for message in (b"", b"s.abcd1234.payload", b"x" * 1000, b"s.abcd1234.payload"):
        kid, mac = ring.sign(message)
        assert kid == key_id(new) == ring.signing_id
        assert mac == hmac.new(new, b"scrapeshield/challenge/v1\x00" + message, hashlib.sha256).digest()
        assert ring.verify(kid, message, mac) and not ring.verify(kid, message + b"!", mac)
        under_old = hmac.new(old, b"scrapeshield/challenge/v1\x00" + message, hashlib.sha256).digest()
        assert ring.verify(key_id(old), message, under_old) and not ring.verify(key_id(new), message, under_old)
