"""Start-up configuration: environment defaults for `run`, and the checks made before starting."""
from __future__ import annotations

import argparse
import socket

import pytest

from scrapeshield.startup import StartupError, check_bindable, environment_defaults, listeners


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--upstream")
    p.add_argument("--store-timeout", type=float, default=0.05)
    p.add_argument("--listen", default="0.0.0.0:8080")
    return p


def test_an_environment_variable_stands_for_its_flag_and_goes_through_its_type() -> None:
    p = _parser()
    environment_defaults(p, {"SCRAPESHIELD_UPSTREAM": "http://app:8000", "SCRAPESHIELD_STORE_TIMEOUT": "0.5"})
    args = p.parse_args([])
    assert (args.upstream, args.store_timeout, args.listen) == ("http://app:8000", 0.5, "0.0.0.0:8080")


def test_a_flag_on_the_command_line_wins_over_the_environment() -> None:
    p = _parser()
    environment_defaults(p, {"SCRAPESHIELD_LISTEN": "127.0.0.1:1"})
    assert p.parse_args(["--listen", "127.0.0.1:2"]).listen == "127.0.0.1:2"


def test_variables_that_name_no_option_are_ignored() -> None:
    p = _parser()
    environment_defaults(p, {"SCRAPESHIELD_CHALLENGE_KEYS": "abc", "SCRAPESHIELD_NOPE": "1"})
    assert not hasattr(p.parse_args([]), "nope")


def test_listen_and_admin_on_one_port_is_refused() -> None:
    with pytest.raises(StartupError, match="--listen and --admin both want port 9000"):
        listeners("0.0.0.0:9000", "127.0.0.1:9000")


def test_an_empty_admin_address_disables_the_admin_listener() -> None:
    assert [lst.flag for lst in listeners("127.0.0.1:8080", "")] == ["--listen"]


def test_a_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        (listen,) = listeners(f"127.0.0.1:{port}", "")
        with pytest.raises(StartupError) as exc:
            check_bindable(listen)
    assert str(exc.value) == f"--listen 127.0.0.1:{port}: the port is already in use"
