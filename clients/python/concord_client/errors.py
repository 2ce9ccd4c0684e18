"""Errors of the Concord Python client, each with the ``code`` Concord's TypeScript errors carry."""

from __future__ import annotations

from typing import Any


class ConcordError(Exception):
    code = "concord_error"


class ValidationError(ConcordError):
    """Bad input: what was expected and what came."""

    code = "validation_error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProtocolError(ConcordError):
    """The namespace speaks another major version of the wire protocol (or has no functions loaded)."""

    code = "protocol_mismatch"


class RecipientNotFoundError(ConcordError):
    code = "recipient_not_found"

    def __init__(self, recipient: str, message_id: str) -> None:
        super().__init__(f"no agent `{recipient}` is registered (message {message_id} was dead-lettered)")
        self.recipient = recipient
        self.message_id = message_id


class RequestTimeoutError(ConcordError):
    code = "request_timeout"

    def __init__(self, recipient: str, request_id: str, timeout: float) -> None:
        super().__init__(f"`{recipient}` did not answer request {request_id} within {timeout:g} s")
        self.recipient = recipient
        self.request_id = request_id


class RemoteError(ConcordError):
    """The request was answered with an ERROR message; ``payload`` is its ERROR payload."""

    code = "remote_error"

    def __init__(self, sender: str, request_id: str, payload: dict[str, Any]) -> None:
        detail = payload.get("message") if isinstance(payload.get("message"), str) else repr(payload)
        super().__init__(f"`{sender}` answered request {request_id} with an error: {detail}")
        self.sender = sender
        self.request_id = request_id
        self.payload = payload
