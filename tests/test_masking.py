"""Masking a known secret in every form a log may show it: case, URL-encoding, base64, hex, split and cut lines."""

from __future__ import annotations

import base64
import string
from urllib.parse import quote, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from bot.core.masking import MASK, MIN_PREFIX, Masker

# Printable ASCII without whitespace or '*', and without '=' and ':' (so no secret looks like an assignment).
_ALPHABET = "".join(c for c in string.ascii_letters + string.digits + string.punctuation if c not in "*=:")
secrets = st.text(alphabet=_ALPHABET, min_size=8, max_size=40)
unicode_secrets = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="*=:"),
    min_size=8,
    max_size=30,
)
words = st.text(alphabet=string.ascii_letters + " .,", max_size=60)


def shown(secret: str, text: str) -> str:
    return Masker([secret])(text)


@given(secrets, words, words)
def test_case_variants_are_masked(secret: str, before: str, after: str) -> None:
    for form in (secret.upper(), secret.lower(), secret.swapcase(), secret.title()):
        out = shown(secret, f"{before} {form} {after}")
        assert form not in out and MASK in out


@given(secrets, words, st.sampled_from(["", "/", "-._~"]))
def test_url_encoded_values_are_masked(secret: str, before: str, safe: str) -> None:
    for form in (quote(secret, safe=safe), quote_plus(secret, safe=safe), quote(secret, safe=safe).lower()):
        out = shown(secret, f"{before} https://x.example/?p={form}&next=1")
        assert form not in out and "&next=1" in out


@given(st.one_of(secrets, unicode_secrets), st.binary(max_size=8), st.binary(max_size=8), st.booleans())
def test_base64_at_every_alignment_is_masked(secret: str, head: bytes, tail: bytes, urlsafe: bool) -> None:
    """Whatever bytes surround the secret (so at each of the three alignments), its base64 is gone entirely."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    token = encode(head + secret.encode() + tail).decode()
    out = shown(secret, f"GET / HTTP/1.1\nAuthorization: Basic {token}\nAccept: */*\n")
    assert token not in out
    assert f"Authorization: Basic {MASK}\nAccept: */*" in out


@given(secrets)
def test_a_basic_header_with_user_and_password_is_masked(secret: str) -> None:
    token = base64.b64encode(f"deploy:{secret}".encode()).decode()
    assert shown(secret, f"curl -H 'Authorization: Basic {token}'") == f"curl -H 'Authorization: Basic {MASK}'"


@given(secrets, st.booleans())
def test_base64_wrapped_over_lines_is_masked(secret: str, urlsafe: bool) -> None:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    token = encode(secret.encode() * 4).decode()
    wrapped = "\n".join(token[i : i + 16] for i in range(0, len(token), 16))
    out = shown(secret, f"-----BEGIN-----\n{wrapped}\n-----END-----")
    assert not [line for line in wrapped.splitlines() if len(line) >= 8 and line in out]


@given(st.one_of(secrets, unicode_secrets), words)
def test_hex_in_either_case_is_masked(secret: str, before: str) -> None:
    hexed = secret.encode().hex()
    for form in (hexed, hexed.upper(), f"0x{hexed}", f"deadbeef{hexed}00"):
        out = shown(secret, f"{before} dump: {form} end")
        assert hexed not in out.lower() and out.endswith(" end")


@given(secrets, st.data(), st.sampled_from(["\n", "\r\n", "\n    ", "\n\t"]))
def test_a_value_split_over_a_line_break_is_masked(secret: str, data: st.DataObject, brk: str) -> None:
    cut = data.draw(st.integers(min_value=1, max_value=len(secret) - 1))
    text = f"connecting with {secret[:cut]}{brk}{secret[cut:]} and retrying\nnext line"
    out = shown(secret, text)
    indent = brk.lstrip("\r\n")
    assert out == f"connecting with {MASK}\n{indent}{MASK} and retrying\nnext line"  # both parts, lines kept


@given(secrets, st.data(), st.sampled_from(["", " ", "\t  "]), st.sampled_from(["\nnext line", ""]))
def test_a_prefix_at_a_lines_end_is_masked(secret: str, data: st.DataObject, pad: str, rest: str) -> None:
    cut = data.draw(st.integers(min_value=MIN_PREFIX, max_value=len(secret) - 1))
    out = shown(secret, f"output cut at {secret[:cut]}{pad}{rest}")
    assert out == f"output cut at {MASK}{pad}{rest}"


def test_short_prefixes_and_prefixes_inside_a_line_are_kept() -> None:
    mask = Masker(["hunter2-plan-secret"])
    assert mask("user hunte\n") == "user hunte\n"  # five characters: too short to tell from a word
    assert mask("hunter2-plan is a plan\n") == "hunter2-plan is a plan\n"  # not at the line's end
    assert mask("this is hunter2-plan\n") == f"this is {MASK}\n"


def test_every_form_at_once_in_a_realistic_log() -> None:
    password = "S3cret/Pass+word"
    log = (
        f"mysql -u root -p{password.upper()}\n"
        f"GET /login?pw={quote(password, safe='')} 401\n"
        f"Authorization: Basic {base64.b64encode(b'root:' + password.encode()).decode()}\n"
        f"key bytes {password.encode().hex()}\n"
        f"echo {password[:9]}\n"
        f"  {password[9:]}\n"
        f"truncated {password[:10]}\n"
    )
    out = Masker([password])(log)
    for fragment in (password, password.upper(), quote(password, safe=""), password.encode().hex(), password[:9]):
        assert fragment not in out
    assert "U2VjcmV0" not in out and "3cret" not in out.lower() and "Pass" not in out
