"""concord_client: a Python agent on a Concord bus over Redis (docs/PROTOCOL.md)."""

from .client import Concord, Delivery, PROTOCOL_MAJOR, error_payload
from .errors import (
    ConcordError,
    ProtocolError,
    RecipientNotFoundError,
    RemoteError,
    RequestTimeoutError,
    ValidationError,
)
from .wire import MAX_PAYLOAD_DEPTH, MAX_WIRE_BYTES, build, decode, encode, new_id

__all__ = [
    "Concord",
    "Delivery",
    "PROTOCOL_MAJOR",
    "error_payload",
    "ConcordError",
    "ProtocolError",
    "RecipientNotFoundError",
    "RemoteError",
    "RequestTimeoutError",
    "ValidationError",
    "MAX_PAYLOAD_DEPTH",
    "MAX_WIRE_BYTES",
    "build",
    "decode",
    "encode",
    "new_id",
]
