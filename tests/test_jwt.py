"""The JWT reader on its own: which `exp` claims it trusts and which tokens it calls opaque."""

from __future__ import annotations

import base64
import json

import pytest

from kimi_tray.kimi.jwt import jwt_expiry
from tests.support.oauth_server import make_jwt


def segment(raw: bytes, pad: bool = False) -> str:
    text = base64.urlsafe_b64encode(raw).decode()
    return text if pad else text.rstrip("=")


HEADER = segment(b'{"alg": "HS256"}')
EXP_ONE = segment(b'{"exp": 1}')


def token_with(payload: bytes, pad: bool = False) -> str:
    return f"{HEADER}.{segment(payload, pad)}.sig"


@pytest.mark.parametrize(("exp", "expected"), [
    (1_900_000_000, 1_900_000_000.0),
    (1_900_000_000.5, 1_900_000_000.5),
    (0, 0.0),
    (-5, -5.0),  # read as written: judging it is the caller's job
    (1e15, 1e15),
])
def test_numeric_exp_is_returned_as_a_float(exp: float, expected: float) -> None:
    value = jwt_expiry(make_jwt({"sub": "user", "exp": exp}))
    assert value == expected and type(value) is float


@pytest.mark.parametrize("claims", [
    {"sub": "user"},
    {"exp": "1900000000"},
    {"exp": None},
    {"exp": True},
    {"exp": [1900000000]},
    {"exp": {"at": 1900000000}},
])
def test_exp_that_is_missing_or_not_a_number_gives_none(claims: dict) -> None:
    assert jwt_expiry(make_jwt(claims)) is None


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_exp_gives_none(literal: bytes) -> None:
    assert jwt_expiry(token_with(b'{"exp": ' + literal + b"}")) is None


@pytest.mark.parametrize("length", range(1, 5))
def test_payload_of_every_padding_length_decodes_with_or_without_padding(length: int) -> None:
    # Vary the payload length so the unpadded segment needs 0, 1 or 2 "=" back.
    payload = json.dumps({"exp": 1_900_000_000, "x": "a" * length}).encode()
    assert jwt_expiry(token_with(payload)) == 1_900_000_000.0
    assert jwt_expiry(token_with(payload, pad=True)) == 1_900_000_000.0


def test_urlsafe_alphabet_is_used() -> None:
    # "~~~" encodes to "fn5-" in the URL-safe alphabet ("fn5+" in the standard one).
    payload = b'{"exp": 1900000000, "k": "~~~>>>"}'
    assert "-" in segment(payload) or "_" in segment(payload)
    assert jwt_expiry(token_with(payload)) == 1_900_000_000.0


@pytest.mark.parametrize("token", [
    "",
    "opaque-refresh-token",
    "a.b",
    "a.b.c.d",
    f"{HEADER}.{EXP_ONE}",  # two segments, valid ones
    f"x.{EXP_ONE}.y.z",  # four segments
])
def test_wrong_segment_count_is_opaque(token: str) -> None:
    assert jwt_expiry(token) is None


@pytest.mark.parametrize("payload", [
    b"not json",
    b"[1900000000]",
    b'"exp"',
    b"1900000000",
    b"\xff\xfe{}",
])
def test_payload_that_is_not_a_json_object_gives_none(payload: bytes) -> None:
    assert jwt_expiry(token_with(payload)) is None


@pytest.mark.parametrize("middle", ["!!!!", "ab$d", "é", "a"])
def test_payload_that_is_not_base64_gives_none(middle: str) -> None:
    assert jwt_expiry(f"head.{middle}.sig") is None


def test_exp_in_other_segments_is_ignored() -> None:
    header = segment(b'{"exp": 1900000000}')
    assert jwt_expiry(f"{header}.{segment(b'{}')}.{header}") is None
