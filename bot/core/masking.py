"""Masking: a host's output made safe to show, with every form of a known secret the bot can think of replaced.

A secret reaches a log in more shapes than its literal value: in another case, URL-encoded (wholly or in part), in
base64 (a `Basic` header: at any of the three byte alignments, in either alphabet, wrapped over lines), in hex,
split over a line break, or cut at a line's end. Each is masked. Masking cannot be complete: a script can always
print a secret reversed, encrypted or one character a line; the README says so.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Iterator

__all__ = ["MASK", "MIN_PREFIX", "MIN_SECRET", "Masker", "clean"]

MASK = "******"
MIN_SECRET = 3
"""Shorter values are not masked by value: masking every "1" or "a" would make any log unreadable."""
MIN_PREFIX = 6
"""A secret's start at a line's end is masked from this many characters on (a line cut where a terminal wraps)."""
MIN_ENCODED = 6
"""An encoded form (base64, hex) shorter than this is not looked for: it would match ordinary words."""

# CSI (colours, cursor moves), OSC (titles, links) and two-character escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")
# A key's name is bounded on both sides: unbounded, a long dash-separated token cost seconds per 20 kB (backtracking).
_SECRET_KEY = (
    r"[A-Za-z0-9_.-]{0,64}(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|credential)[A-Za-z0-9_.-]{0,64}"
)
_ASSIGNMENT = re.compile(rf"(?i)(\b{_SECRET_KEY}\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)")
_FLAG = re.compile(rf"(?i)(--?{_SECRET_KEY}[ =])(\"[^\"]*\"|'[^']*'|[^\s\-][^\s]*)")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)([^/\s@]+)(@)")

_BREAK = r"(?:\r?\n[ \t]{0,64})?"
"""Between two characters of a secret: a line break (and the next line's indent) that splits it."""
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")


def clean(text: str) -> str:
    """Text a person can read and Slack accepts: no escapes, no stray control characters, valid UTF-8."""
    text = _SURROGATE.sub("\ufffd", text)  # in a str every surrogate is a lone one: it cannot be encoded
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def _char(c: str) -> str:
    """One character of a secret as a log may show it: itself (any case) or percent-encoded (`+` for a space)."""
    forms = [re.escape(c)] + ["".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))]
    if c == " ":
        forms.append(r"\+")
    return "(?:" + "|".join(forms) + ")"


def _plain(value: str) -> str:
    """The value in any case, URL-encoded wholly or in part, and split over a line break anywhere."""
    return _BREAK.join(_char(c) for c in value)


def _encoded(value: str) -> Iterator[str]:
    """The characters of base64 (both alphabets, three alignments) and hex that depend on the value alone.

    In base64 a value starting at byte offset k (mod 3) of the encoded data gives the same characters whatever
    surrounds it, once the characters that also carry neighbouring bits are left off at each end.
    """
    data = value.encode("utf-8", "surrogatepass")
    for k in range(3):
        start = -(-k * 8 // 6)  # characters that also carry bits of the bytes before
        end = (k + len(data)) * 8 // 6  # characters made only of the value's bits
        core = base64.b64encode(b"\0" * k + data).decode()[start:end]
        for form in {core, core.replace("+", "-").replace("/", "_")}:
            if len(form) >= MIN_ENCODED:
                yield _BREAK.join(re.escape(c) for c in form)
    yield "(?i:" + data.hex() + ")"


def _mask_span(span: str) -> str:
    """A mask for each line of a matched span, keeping the line breaks and the next lines' indents."""
    first, *rest = span.split("\n")
    return "\n".join([MASK, *(line[: len(line) - len(line.lstrip(" \t"))] + MASK for line in rest)])


def _widen(text: str, start: int, end: int, chars: frozenset[str]) -> tuple[int, int]:
    """An encoded match grown to the whole token around it (a `Basic` header's credentials, a hex dump's word)."""
    while start > 0 and text[start - 1] in chars:
        start -= 1
    while end < len(text) and text[end] in chars:
        end += 1
    while end < len(text) and text[end] == "=" and chars is _B64_CHARS:
        end += 1
    return start, end


class Masker:
    """Replaces known secret values in every form it knows (longest first) and secret-looking assignments."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Logs are cleaned before they are masked, so a secret is also looked for as cleaning would leave it.
        known = {form for s in secrets for form in (s, clean(s))}
        values = sorted({s for s in known if len(s) >= MIN_SECRET}, key=len, reverse=True)
        self._plain = re.compile("|".join(_plain(v) for v in values), re.IGNORECASE) if values else None
        encoded = [form for v in values for form in _encoded(v)]
        self._encoded = re.compile("|".join(sorted(set(encoded), key=len, reverse=True))) if encoded else None
        # A line ending in a secret's first characters: found by its first MIN_PREFIX, checked against the rest.
        self._prefixes: dict[str, list[str]] = {}
        for v in values:
            if len(v) > MIN_PREFIX:
                self._prefixes.setdefault(v[:MIN_PREFIX].lower(), []).append(v.lower())
        # Bounded by the longest value, so a line full of a prefix's first characters costs a constant per start.
        starts = "|".join(re.escape(p) for p in self._prefixes)
        rest = max((len(v) for v in values), default=0)
        line_end = rf"(?=((?:{starts})[^\n]{{0,{rest}}}?)[ \t]{{0,64}}(?:\r?\n|\Z))"
        self._prefix = re.compile(line_end, re.IGNORECASE) if starts else None

    def __call__(self, text: str) -> str:
        if self._encoded is not None:
            text = self._replace(text, self._encoded, widen=True)
        if self._plain is not None:
            text = self._replace(text, self._plain, widen=False)
        if self._prefix is not None:
            text = self._mask_prefixes(text)
        text = _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)
        text = _ASSIGNMENT.sub(rf"\g<1>{MASK}", text)
        return _FLAG.sub(rf"\g<1>{MASK}", text)

    @staticmethod
    def _replace(text: str, pattern: re.Pattern[str], *, widen: bool) -> str:
        spans: list[tuple[int, int]] = []
        for match in pattern.finditer(text):
            start, end = match.span()
            if spans and end <= spans[-1][1]:  # inside a token already masked
                continue
            if widen:
                chars = _HEX_CHARS if all(c in _HEX_CHARS for c in match.group()) else _B64_CHARS
                start, end = _widen(text, start, end, chars)
            if spans and start <= spans[-1][1]:  # grown into the previous token: one mask for both
                spans[-1] = (min(start, spans[-1][0]), max(end, spans[-1][1]))
            else:
                spans.append((start, end))
        return _apply(text, spans, _mask_span)

    def _mask_prefixes(self, text: str) -> str:
        spans: list[tuple[int, int]] = []
        for match in self._prefix.finditer(text) if self._prefix is not None else ():
            found = match.group(1)
            candidate = found.lower()
            values = self._prefixes.get(candidate[:MIN_PREFIX], [])
            if any(len(candidate) < len(v) and v.startswith(candidate) for v in values):
                if not spans or match.start() >= spans[-1][1]:
                    spans.append((match.start(), match.start() + len(found)))
        return _apply(text, spans, lambda _: MASK)


def _apply(text: str, spans: Iterable[tuple[int, int]], mask: Callable[[str], str]) -> str:
    """The text with each (start, end) span, in order and apart, replaced by its mask."""
    out, at = [], 0
    for start, end in spans:
        out += [text[at:start], mask(text[start:end])]
        at = end
    return "".join(out) + text[at:] if out else text
