"""The message wire form (docs/PROTOCOL.md, schema/message.schema.json): build, encode, decode.

The decoder holds a document to the same rules as Concord's TypeScript decoder: the JSON Schema
(checked with ``jsonschema``) for the shape, and in code the two rules a schema cannot state (the
document is at most MAX_WIRE_BYTES of UTF-8, the payload nests at most MAX_PAYLOAD_DEPTH deep),
plus JSON's own: no NaN/Infinity, no number that overflows a double (``1e400``).
"""

from __future__ import annotations

import json
import os
import random
import time
from datetime import datetime, timezone
from typing import Any

import jsonschema

from .errors import ValidationError

#: The decoder's size limit: the whole document as UTF-8 JSON text (1 MiB + 64 KiB).
MAX_WIRE_BYTES = 1024 * 1024 + 64 * 1024
#: What a send may produce at attempt 0 (room left for the attempt count written later).
MAX_SEND_WIRE_BYTES = MAX_WIRE_BYTES - 64
#: Deepest nesting of arrays and objects inside a payload (the payload itself is depth 0).
MAX_PAYLOAD_DEPTH = 256
FORBIDDEN_KEYS = frozenset(("__proto__", "constructor", "prototype"))
MESSAGE_TYPES = ("task", "result", "status", "error", "feedback", "control")
DEFAULT_PRIORITY = 5

with open(os.path.join(os.path.dirname(__file__), "message.schema.json"), encoding="utf-8") as _f:
    SCHEMA: dict[str, Any] = json.load(_f)
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _reject_constant(name: str) -> Any:
    raise ValidationError(f"wire message is not valid JSON: {name} is no JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValidationError(f"wire message has a number that overflows to infinity: {text[:40]}")
    return value


def _finite_int(text: str) -> int:
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise ValidationError(f"wire message has a number that overflows to infinity: {text[:40]}…") from None
    return value


def parse_json(text: str) -> Any:
    """``json.loads`` as JavaScript's JSON.parse reads numbers: no NaN/Infinity, nothing beyond a double."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_finite_int)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError(f"payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels") from None
    except ValueError as err:
        raise ValidationError(f"wire message is not valid JSON: {err}") from None


def utf8_size(text: str) -> int:
    """Size of ``text`` as UTF-8 (a lone surrogate counts 3 bytes, as the replacement character it becomes)."""
    return len(text.encode("utf-8", "surrogatepass"))


def payload_problem(payload: Any) -> str | None:
    """Why ``payload`` is no payload (depth, forbidden key, non-finite number), or None. Iterative: no recursion limit."""
    if not isinstance(payload, (dict, list)):
        return f"payload must be a JSON object or array, got {type(payload).__name__}"
    stack: list[tuple[Any, int, str]] = [(payload, 0, "payload")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, (int, float)):
            if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
                return f"{path} must be a finite number, got {value}"
            continue
        if isinstance(value, (dict, list)):
            if depth >= MAX_PAYLOAD_DEPTH:
                return f"{path} is nested deeper than {MAX_PAYLOAD_DEPTH} levels"
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        return f"{path} has a key that is no string: {key!r}"
                    if key in FORBIDDEN_KEYS:
                        return f"{path} has the forbidden key `{key}`"
                    stack.append((item, depth + 1, f"{path}.{key}"))
            else:
                for i, item in enumerate(value):
                    stack.append((item, depth + 1, f"{path}[{i}]"))
            continue
        return f"{path} is not JSON data (a {type(value).__name__})"
    return None


def check_document(doc: Any) -> None:
    """Holds a parsed document to the wire rules; raises ValidationError naming the first problem."""
    if not isinstance(doc, dict):
        raise ValidationError(f"wire message must be a JSON object, got {type(doc).__name__}")
    payload = doc.get("payload")
    if "payload" in doc:
        problem = payload_problem(payload)
        if problem is not None:
            raise ValidationError(problem, field="payload")
        # The schema's payload rule is what payload_problem just checked; a shallow stand-in of the
        # same kind spares jsonschema a recursion as deep as the payload.
        doc = {**doc, "payload": {} if isinstance(payload, dict) else []}
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(doc))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "message"
        raise ValidationError(f"{where}: {error.message}", field=where)


def decode(text: str) -> dict[str, Any]:
    """A wire text as a message dict (headers always present), or ValidationError."""
    if not isinstance(text, str):
        raise ValidationError(f"wire message must be a string, got {type(text).__name__}")
    size = utf8_size(text)
    if size > MAX_WIRE_BYTES:
        raise ValidationError(f"wire message must be at most {MAX_WIRE_BYTES} bytes, got {size}")
    doc = parse_json(text)
    check_document(doc)
    doc.setdefault("headers", {})
    return doc


def encode(message: dict[str, Any], limit: int = MAX_WIRE_BYTES) -> str:
    """The wire text of ``message`` (checked: what is sent must decode everywhere)."""
    check_document(message)
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    size = utf8_size(text)
    if size > limit:
        raise ValidationError(f"message must be at most {limit} bytes in its wire form, got {size}", field="message")
    return text


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A ULID: 48-bit millisecond time and 80 random bits, Crockford base 32 (sortable by creation)."""
    value = (int(time.time() * 1000) << 80) | random.getrandbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def new_traceparent() -> str:
    return f"00-{random.getrandbits(128) or 1:032x}-{random.getrandbits(64) or 1:016x}-01"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(
    *,
    sender: str,
    recipient: str,
    type: str = "task",
    payload: Any,
    priority: int = DEFAULT_PRIORITY,
    correlation_id: str | None = None,
    headers: dict[str, str] | None = None,
    ttl_ms: float | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    """A new message (attempt 0), validated as the wire rules require."""
    message: dict[str, Any] = {
        "id": id if id is not None else new_id(),
        "type": type,
        "sender": sender,
        "recipient": recipient,
        "payload": payload,
        "timestamp": now_iso(),
        "priority": priority,
        "headers": dict(headers or {}),
        "attempt": 0,
    }
    message["headers"].setdefault("traceparent", new_traceparent())
    if correlation_id is not None:
        message["correlationId"] = correlation_id
    if ttl_ms is not None:
        message["ttlMs"] = ttl_ms
    check_document(message)
    return message
