"""Terminals in grammar files: quoting and escapes, read by the DSL's builder and written by
its canonical writer (backslash escapes for quote, backslash, newline, tab, return; x/u/U codes)."""

from __future__ import annotations

import re

_ESCAPE_OF = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_CHAR_OF = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_ESCAPE_RE = re.compile(r'\\(?:(["\\ntr])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))')


class BadEscape(Exception):
    def __init__(self, offset: int) -> None:
        self.offset = offset  # of the backslash, within the quoted token


def unquote(raw: str) -> str:
    body = raw[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while (j := body.find("\\", i)) >= 0:
        out.append(body[i:j])
        m = _ESCAPE_RE.match(body, j)
        code = m and (m.group(2) or m.group(3) or m.group(4))
        if m is None or (code and int(code, 16) > 0x10FFFF):
            raise BadEscape(j + 1)
        out.append(chr(int(code, 16)) if code else _CHAR_OF[m.group(1)])
        i = m.end()
    out.append(body[i:])
    return "".join(out)


def quote(t: str) -> str:
    if t.isprintable() and '"' not in t and "\\" not in t:
        return f'"{t}"'
    return '"' + "".join(_escape(ch) for ch in t) + '"'


def _escape(ch: str) -> str:
    if ch in _ESCAPE_OF:
        return _ESCAPE_OF[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )
