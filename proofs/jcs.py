"""RFC 8785 (JCS) canonical JSON for the values our signed documents hold: objects, arrays,
strings, integers within ±(2^53 - 1), booleans and null. Standard library only, so the public
verifier needs no JSON dependency; the tests check it against the `rfc8785` package.

Floats are refused (a header never holds one: amounts are decimal strings).
"""

from __future__ import annotations

_SAFE_INT = (1 << 53) - 1
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class NotCanonicalisable(ValueError):
    pass


def _string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise NotCanonicalisable("lone surrogate in string")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _utf16_key(s: str):
    return s.encode("utf-16-be")


def _encode(value, out: list, depth: int):
    if depth > 64:
        raise NotCanonicalisable("nested too deeply")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > _SAFE_INT:
            raise NotCanonicalisable("integer beyond 2^53: use a decimal string")
        out.append(str(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise NotCanonicalisable("object keys must be strings")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out, depth + 1)
        out.append("}")
    else:
        raise NotCanonicalisable(f"{type(value).__name__} is not allowed in a signed document")


def dumps(value) -> bytes:
    out: list[str] = []
    _encode(value, out, 0)
    return "".join(out).encode("utf-8")
