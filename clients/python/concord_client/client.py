"""A Concord namespace on Redis, through the published ``concord_v1_*`` functions (docs/PROTOCOL.md)."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

import redis

from . import wire
from .errors import (
    ProtocolError,
    RecipientNotFoundError,
    RemoteError,
    RequestTimeoutError,
    ValidationError,
)

PROTOCOL_MAJOR = 1
INBOX_PREFIX = "_inbox."
#: Longest a waiting receive blocks on a queue's wake-up list before it leases again on its own:
#: expired leases and due delayed messages wake nobody.
MAX_BLOCK_S = 2.0


def error_payload(error: BaseException, attempts: int) -> dict[str, Any]:
    """An ERROR reply's payload, as Concord's bus writes it: ``{message, attempts, name, code?}``."""
    payload: dict[str, Any] = {"message": str(error) or type(error).__name__, "attempts": attempts, "name": type(error).__name__}
    code = getattr(error, "code", None)
    if isinstance(code, str):
        payload["code"] = code
    return payload


def asks_for_reply(message: dict[str, Any]) -> bool:
    """Every TASK, and a FEEDBACK sent by ``request`` (it carries a replyTo), gets a RESULT or ERROR back."""
    return message["type"] == "task" or (message["type"] == "feedback" and "replyTo" in message.get("headers", {}))


@dataclass
class Delivery:
    """A leased message: ack, nack, extend, dead-letter or reply before ``lease_ms`` runs out."""

    client: "Concord"
    queue: str
    message: dict[str, Any]
    token: str
    attempt: int
    settled: bool = field(default=False)

    def ack(self) -> bool:
        """Removes the message for good; False when the lease was lost (it will be delivered again)."""
        self.settled = True
        if self.token == "inbox":
            return True
        return self.client._call("concord_v1_ack", self.queue, self.message["id"], self.token) == 1

    def nack(self, delay_ms: int = 0) -> bool:
        """Gives the message back, visible again after ``delay_ms``; its next delivery is attempt + 1."""
        self.settled = True
        return self.client._call("concord_v1_nack", self.queue, self.message["id"], self.token, int(delay_ms)) == 1

    def extend(self, ms: int) -> bool:
        """Moves the lease's deadline to now + ``ms``; False when it was lost already."""
        token = self.client._call("concord_v1_extend", self.queue, self.message["id"], self.token, int(ms))
        if token in (0, b"0", "0"):
            return False
        self.token = token.decode() if isinstance(token, bytes) else str(token)
        return True

    def dead_letter(self, reason: str, error: str = "") -> bool:
        """Moves the message to the dead letters (reason: max_attempts, expired, malformed, recipient_not_found)."""
        self.settled = True
        letter = {**self.message, "attempt": self.attempt}
        return self.client._call(
            "concord_v1_dead_letter", self.queue, self.message["id"], self.token, reason, error, self.attempt, wire.encode(letter), ""
        ) == 1

    def reply(self, payload: Any, type: str = "result", sender: str | None = None) -> dict[str, Any]:
        """Answers the message (RESULT unless ``type`` says ERROR) and acks it in the same atomic step."""
        reply = self.client.reply_message(self.message, payload, type=type, sender=sender or self.queue)
        queue = self.message["headers"].get("replyTo") or self.message["sender"]
        require = "0" if "replyTo" in self.message["headers"] else "1"
        lease = [self.queue, self.message["id"], self.token] if self.token != "inbox" else []
        out = self.client._call("concord_v1_reply", queue, wire.encode(reply, wire.MAX_SEND_WIRE_BYTES), require, *lease)
        self.settled = True
        if _text(out[0]) == "enqueued":
            self.client._publish_wire(reply["type"], reply)
        return reply


class Concord:
    """One namespace of a Concord bus on Redis.

    ``url``: ``redis://host:port/db?namespace=NAME`` (as Concord's TypeScript side takes it).
    ``connect()`` checks the namespace's protocol version (a ``ProtocolError`` for another major).
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0?namespace=default", *, name: str = "python") -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss"):
            raise ValidationError(f"url must be redis://host:port/db?namespace=NAME, got `{url}`", field="url")
        self.namespace = parse_qs(parsed.query).get("namespace", ["default"])[0]
        self.prefix = f"concord:{{{self.namespace}}}:"
        self.protocol_key = self.prefix + "protocol"
        self.name = name
        self.inbox = INBOX_PREFIX + wire.new_id()
        redis_url = parsed._replace(query="").geturl()
        self.redis = redis.Redis.from_url(redis_url, decode_responses=False)
        self._replies: dict[str, dict[str, Any] | BaseException] = {}
        self._pubsubs: list[Any] = []

    # ------------------------------------------------------------------ connection

    def connect(self) -> "Concord":
        """Checks the protocol version of the namespace (recording 1 in a fresh one)."""
        try:
            major, _revision = self._call("concord_v1_protocol")
        except redis.ResponseError as err:
            text = str(err)
            if "CONCORD_PROTOCOL" in text:
                raise ProtocolError(text.split(" script:")[0]) from None
            if "Function not found" in text or "unknown command" in text.lower():
                raise ProtocolError(
                    "the concord_v1 functions are not loaded on this Redis (a Concord TypeScript transport loads them when it "
                    f"connects; or load clients/../src/backends/redis/functions/concord_v1.lua with FUNCTION LOAD): {text}"
                ) from None
            raise
        if int(major) != PROTOCOL_MAJOR:
            raise ProtocolError(f"namespace {self.namespace} speaks protocol {major}; this client speaks {PROTOCOL_MAJOR}")
        return self

    def close(self) -> None:
        for pubsub in self._pubsubs:
            pubsub.close()
        self.redis.close()

    def _call(self, function: str, *args: Any) -> Any:
        try:
            return self.redis.fcall(function, 1, self.protocol_key, *args)
        except redis.ResponseError as err:
            if "CONCORD_PROTOCOL" in str(err):
                raise ProtocolError(str(err).split(" script:")[0]) from None
            raise

    # ------------------------------------------------------------------ agents

    def register(self, name: str) -> None:
        """Marks ``name`` as a recipient: sends to it are accepted from then on."""
        self._call("concord_v1_register", _name(name, "name"))

    def unregister(self, name: str) -> None:
        self._call("concord_v1_unregister", _name(name, "name"))

    # ------------------------------------------------------------------ sending

    def send(
        self,
        recipient: str,
        payload: Any,
        *,
        sender: str | None = None,
        type: str = "task",
        priority: int = wire.DEFAULT_PRIORITY,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
        ttl_ms: float | None = None,
        id: str | None = None,
        delay_ms: int = 0,
        dedupe_window_ms: int = 0,
    ) -> dict[str, Any]:
        """Enqueues a message for ``recipient`` (a registered agent) and shows it to subscribers of its type.

        Returns the message (or, for a duplicate id within ``dedupe_window_ms``, the first one).
        Raises RecipientNotFoundError (the message is dead-lettered) when nobody registered ``recipient``.
        """
        message = wire.build(
            sender=sender or self.name, recipient=recipient, type=type, payload=payload, priority=priority,
            correlation_id=correlation_id, headers=headers, ttl_ms=ttl_ms, id=id,
        )
        return self._enqueue(recipient, message, delay_ms=delay_ms, dedupe_window_ms=dedupe_window_ms, require_recipient=True)

    def _enqueue(self, queue: str, message: dict[str, Any], *, delay_ms: int = 0, dedupe_window_ms: int = 0, require_recipient: bool) -> dict[str, Any]:
        text = wire.encode(message, wire.MAX_SEND_WIRE_BYTES)
        out = self._call("concord_v1_enqueue", queue, text, int(delay_ms), int(dedupe_window_ms), "1" if require_recipient else "0")
        status = _text(out[0])
        if status == "duplicate":
            return wire.decode(_text(out[1]))
        if status == "no_recipient":
            self._call("concord_v1_dead_letter", queue, message["id"], "", "recipient_not_found", "", 0, text, "")
            raise RecipientNotFoundError(queue, message["id"])
        self._publish_wire(message["type"], message)
        return message

    def request(self, recipient: str, payload: Any, *, timeout: float = 30.0, sender: str | None = None, type: str = "task", **options: Any) -> dict[str, Any]:
        """Sends a TASK (or FEEDBACK) whose reply comes to this client's inbox; returns the reply.

        Raises RemoteError for an ERROR reply, RequestTimeoutError when none came within ``timeout``
        seconds, ValidationError when the reply to it is no valid message.
        """
        headers = {**options.pop("headers", {}), "replyTo": self.inbox}
        message = wire.build(sender=sender or self.name, recipient=recipient, type=type, payload=payload, headers=headers, **_build_options(options))
        message.setdefault("correlationId", message["id"])
        self._enqueue(recipient, message, require_recipient=True, **_enqueue_options(options))
        deadline = time.monotonic() + timeout
        key = self._queue_key(self.inbox, "list")
        while True:
            answer = self._replies.pop(message["id"], None)
            if answer is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestTimeoutError(recipient, message["id"], timeout)
            popped = self.redis.blpop([key], timeout=max(0.01, min(left, MAX_BLOCK_S)))
            if popped is not None:
                self._file_reply(_text(popped[1]))
        if isinstance(answer, BaseException):
            raise answer
        if answer["type"] == "error":
            raise RemoteError(answer["sender"], message["id"], answer["payload"])
        return answer

    def _file_reply(self, text: str) -> None:
        """Files a reply popped from the inbox under the request it answers; an undecodable one fails that request."""
        try:
            reply = wire.decode(text)
        except ValidationError as err:
            in_reply_to = _salvage_in_reply_to(text)
            if in_reply_to is not None:
                self._replies[in_reply_to] = ValidationError(f"the reply to request {in_reply_to} is not a valid message: {err}", field="reply")
            return
        in_reply_to = reply["headers"].get("inReplyTo")
        if in_reply_to is not None:
            self._replies[in_reply_to] = reply

    def reply_message(self, request: dict[str, Any], payload: Any, *, type: str = "result", sender: str | None = None) -> dict[str, Any]:
        """The reply to ``request``: to its sender, with its correlation id and ``inReplyTo`` its id."""
        if not isinstance(payload, (dict, list)):
            payload = {"value": payload}
        return wire.build(
            sender=sender or request["recipient"] or self.name,
            recipient=request["sender"],
            type=type,
            payload=payload,
            priority=request["priority"],
            correlation_id=request.get("correlationId") or request["id"],
            headers={"inReplyTo": request["id"], "traceparent": _child_traceparent(request["headers"].get("traceparent"))},
        )

    # ------------------------------------------------------------------ receiving

    def receive(self, queue: str, *, lease_ms: int = 60_000, wait: float = 0.0, count: int = 1, max_attempts: int = 5) -> list[Delivery]:
        """Leases up to ``count`` messages of ``queue``, waiting up to ``wait`` seconds for one.

        Applies the bus's delivery rules, as Concord's TypeScript bus does: a message that does not
        decode is dead-lettered ``malformed``; one past its ttl ``expired``; one whose attempt
        exceeds ``max_attempts`` (its leases kept running out) ``max_attempts``, and a request among
        them gets an ERROR reply. None of those is returned.
        """
        deadline = time.monotonic() + wait
        while True:
            wait_ms, entries = self._call("concord_v1_lease", queue, int(count), int(lease_ms))
            out = [d for d in (self._delivery(queue, e, max_attempts) for e in entries) if d is not None]
            if out:
                return out
            if entries:
                continue  # all were dead-lettered: look again at once
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            block = min(left, MAX_BLOCK_S, (int(wait_ms) / 1000) if int(wait_ms) > 0 else MAX_BLOCK_S)
            self.redis.blpop([self._queue_key(queue, "signal")], timeout=max(0.01, block))

    def _delivery(self, queue: str, entry: list[Any], max_attempts: int) -> Delivery | None:
        id_, body, attempt, token = _text(entry[0]), entry[1], int(entry[2]), _text(entry[3])
        raw = _text(body) if body else ""
        try:
            message = wire.decode(raw)
        except ValidationError as err:
            stand_in = _stand_in(raw, id_, queue, attempt)
            self._call("concord_v1_dead_letter", queue, id_, token, "malformed", str(err), attempt, wire.encode(stand_in), raw)
            return None
        message["attempt"] = attempt
        delivery = Delivery(self, queue, message, token, attempt)
        ttl = message.get("ttlMs")
        if ttl is not None and _epoch_ms(message["timestamp"]) + ttl < time.time() * 1000:
            delivery.dead_letter("expired", f"ttl of {ttl:g} ms ran out before delivery")
            return None
        if attempt > max_attempts:
            attempts = attempt - 1
            delivery.dead_letter("max_attempts", "lease expired")
            if asks_for_reply(message):
                self._auto_reply(message, error_payload(TimeoutError("lease expired"), attempts), "error")
            return None
        return delivery

    def _auto_reply(self, request: dict[str, Any], payload: Any, type: str) -> None:
        reply = self.reply_message(request, payload, type=type)
        queue = request["headers"].get("replyTo") or request["sender"]
        out = self._call("concord_v1_reply", queue, wire.encode(reply), "0" if "replyTo" in request["headers"] else "1")
        if _text(out[0]) == "enqueued":
            self._publish_wire(reply["type"], reply)

    def serve(
        self,
        name: str,
        handler: Callable[[dict[str, Any]], Any],
        *,
        stop: threading.Event | None = None,
        lease_ms: int = 60_000,
        max_attempts: int = 5,
        backoff_ms: tuple[int, float, int] = (200, 2.0, 30_000),
    ) -> None:
        """Runs ``name`` as an agent until ``stop`` is set: registers it, then handles its messages.

        A request's (a TASK's) return value is its RESULT. A handler that raises is retried after a
        backoff (``initial ms, factor, max ms``); on its last attempt the message is dead-lettered
        ``max_attempts`` and a request gets an ERROR reply ({message, attempts, name, code?}).
        """
        self.register(name)
        stop = stop or threading.Event()
        while not stop.is_set():
            for delivery in self.receive(name, lease_ms=lease_ms, wait=0.5, max_attempts=max_attempts):
                self._handle(delivery, handler, max_attempts, backoff_ms, name)

    def _handle(self, delivery: Delivery, handler: Callable[[dict[str, Any]], Any], max_attempts: int, backoff_ms: tuple[int, float, int], name: str) -> None:
        message = delivery.message
        try:
            result = handler(message)
        except Exception as error:  # noqa: BLE001 - a handler's failure is the message's outcome
            if delivery.attempt >= max_attempts:
                delivery.dead_letter("max_attempts", str(error) or type(error).__name__)
                if asks_for_reply(message):
                    self._auto_reply(message, error_payload(error, delivery.attempt), "error")
            else:
                initial, factor, cap = backoff_ms
                delay = min(cap, initial * factor ** (delivery.attempt - 1)) * (0.8 + 0.4 * random.random())
                delivery.nack(int(min(cap, delay)))
            return
        if delivery.settled:
            return
        if asks_for_reply(message):
            delivery.reply(result if result is not None else {"value": None}, sender=name)
        else:
            delivery.ack()

    # ------------------------------------------------------------------ pub/sub

    def publish(self, payload: Any, *, topic: str | None = None, sender: str | None = None, type: str = "status", **options: Any) -> dict[str, Any]:
        """Publishes a message (recipient '') on ``topic``, or on its type's topic. At most once."""
        headers = dict(options.pop("headers", {}) or {})
        if topic is not None:
            headers["topic"] = _name(topic, "topic")
        message = wire.build(sender=sender or self.name, recipient="", type=type, payload=payload, headers=headers, **_build_options(options))
        self._publish_wire(topic or type, message)
        return message

    def _publish_wire(self, topic: str, message: dict[str, Any]) -> int:
        return int(self._call("concord_v1_publish", topic, wire.encode(message)))

    def subscribe(self, topic: str, handler: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Calls ``handler`` (on a thread of its own) with each message on ``topic`` (a type, a custom topic or '*').

        Returns once the subscription is live; call what it returns to stop.
        """
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        channel = self.prefix + "topic:" + ("*" if topic == "*" else _name(topic, "topic"))

        def deliver(event: dict[str, Any]) -> None:
            try:
                message = wire.decode(_text(event["data"]))
            except ValidationError:
                return  # not a message: nothing to deliver
            handler(message)

        if topic == "*":
            # all-topics carries nothing: subscribing to it tells producers someone listens to every topic.
            pubsub.subscribe(**{self.prefix + "all-topics": lambda _event: None})
            pubsub.psubscribe(**{channel: deliver})
        else:
            pubsub.subscribe(**{channel: deliver})
        # Wait for Redis to confirm, so a publication right after is seen: it answers a PING only
        # after the subscriptions sent before it.
        pubsub.ping()
        deadline = time.monotonic() + 10.0
        while (event := pubsub.get_message(timeout=1.0)) is None or event["type"] != "pong":
            if time.monotonic() > deadline:
                pubsub.close()
                raise TimeoutError("Redis did not confirm the subscription within 10 s")
        thread = pubsub.run_in_thread(sleep_time=0.05, daemon=True)
        self._pubsubs.append(pubsub)

        def stop() -> None:
            thread.stop()
            thread.join(timeout=2)
            pubsub.close()

        return stop

    # ------------------------------------------------------------------ dead letters

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The oldest dead letters ({message, queue, reason, error?, attempts, deadAt ms, raw?}). Read-only."""
        ids = self.redis.zrange(self.prefix + "dlq:order", 0, limit - 1)
        out = []
        for id_ in ids:
            letter = self.redis.hget(self.prefix + "dlq", id_)
            if letter is None:
                continue
            o = json.loads(letter)
            entry = {"message": json.loads(o["m"]), "queue": o["q"], "reason": o["r"], "attempts": o["n"], "deadAt": o["d"]}
            if "e" in o:
                entry["error"] = o["e"]
            if "raw" in o:
                entry["raw"] = o["raw"]
            out.append(entry)
        return out

    def _queue_key(self, queue: str, part: str) -> str:
        return f"{self.prefix}q:{queue.replace('%', '%25').replace(':', '%3A')}:{part}"


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or value == "" or len(value) > 256 or any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValidationError(f"{what} must be a name (1..256 characters, no control character), got {value!r}", field=what)
    return value


def _build_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: options.pop(k) for k in ("priority", "correlation_id", "ttl_ms", "id") if k in options}


def _enqueue_options(options: dict[str, Any]) -> dict[str, Any]:
    out = {k: options.pop(k) for k in ("delay_ms", "dedupe_window_ms") if k in options}
    if options:
        raise ValidationError(f"unknown option(s): {', '.join(sorted(options))}")
    return out


def _child_traceparent(parent: str | None) -> str:
    fresh = wire.new_traceparent()
    if isinstance(parent, str) and len(parent) == 55 and parent.startswith("00-"):
        return parent[:36] + fresh[36:]
    return fresh


def _epoch_ms(timestamp: str) -> float:
    from datetime import datetime

    text = timestamp.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        text = head + "." + digits[:6].ljust(6, "0") + rest[len(digits):]
    try:
        return datetime.fromisoformat(text).timestamp() * 1000
    except ValueError:
        return float("inf")  # year 0000: treat as never expiring rather than guess


def _salvage_in_reply_to(text: str) -> str | None:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    value = doc.get("headers", {}).get("inReplyTo") if isinstance(doc, dict) and isinstance(doc.get("headers"), dict) else None
    return value if isinstance(value, str) else None


def _stand_in(raw: str, id_: str, queue: str, attempt: int) -> dict[str, Any]:
    """A valid message standing in for one that does not decode (its dead letter's ``raw`` keeps the bytes)."""
    return {
        "id": id_ if id_ else wire.new_id(),
        "type": "error",
        "sender": "unknown",
        "recipient": queue,
        "payload": {},
        "timestamp": wire.now_iso(),
        "priority": wire.DEFAULT_PRIORITY,
        "headers": {},
        "attempt": attempt,
    }
