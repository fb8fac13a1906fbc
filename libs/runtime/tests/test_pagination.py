"""Cursors: what `encode_cursor` writes decodes; anything tampered is a 400, never a crash."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from runtime.errors import ValidationFailed
from runtime.pagination import decode_cursor, decode_id_cursor, decode_int_cursor, encode_cursor


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_round_trip():
    ts = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    assert decode_cursor(encode_cursor(ts, "tkt_01HXYZ")) == (ts, "tkt_01HXYZ")


@pytest.mark.parametrize("cursor", [
    "!!!", "a", _b64(b"no-separator"), _b64(b"2026-05-01T12:30:00|x"),  # naive time
    _b64(b"not-a-time|x"), _b64(b"2026-05-01T12:30:00+00:00|"),
    _b64(b"0001-01-01T00:00:00+14:00|x"), _b64(b"9999-12-31T23:59:59-14:00|x"),
    _b64(b"2026-05-01T12:30:00+00:00|a\x00b"), _b64(b"2026-05-01T12:30:00+00:00|\x1b[2J"),
    _b64(b"2026-05-01T12:30:00+00:00|" + b"x" * 500), _b64(b"\xff\xfe|x"),
    _b64("2026-05-01T12:30:00+00:00|\ud800".encode("utf-8", "surrogatepass")),
])
def test_tampered_cursors_are_a_400(cursor):
    with pytest.raises(ValidationFailed) as err:
        decode_cursor(cursor)
    assert err.value.status == 400 and err.value.code == "VALIDATION_ERROR"


def test_int_cursor():
    assert decode_int_cursor(None) is None and decode_int_cursor("") is None
    assert decode_int_cursor("42") == 42
    assert decode_int_cursor(str(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize("cursor", ["-1", "1.5", "abc", "²", "١٢", str(2**63), "9" * 400, " 1"])
def test_int_cursor_out_of_range_or_not_ascii_digits_is_a_400(cursor):
    with pytest.raises(ValidationFailed):
        decode_int_cursor(cursor)


def test_id_cursor():
    assert decode_id_cursor(None) is None and decode_id_cursor("") is None
    row_id = "0123456789abcdef0123456789abcdef"
    assert decode_id_cursor(row_id) == row_id


@pytest.mark.parametrize("cursor", ["9\u00da\U000823f5", "0123456789ABCDEF0123456789ABCDEF",
                                    "0123456789abcdef0123456789abcde", "x" * 32, "'; --"])
def test_id_cursor_other_than_a_row_id_is_a_400(cursor):
    with pytest.raises(ValidationFailed):
        decode_id_cursor(cursor)
