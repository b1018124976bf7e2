"""Error bodies in the two shapes a real upstream answers with: the gateway's and the vendor's."""

import datetime
import http
import uuid
from typing import Any

GATEWAY_MESSAGES = {
    401: "This request requires a valid API key. Check the Authorization header.",
    403: "You have run out of credits. Top up your balance to continue.",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
RETRY_AFTER_SECONDS = 7


def request_id() -> str:
    return str(uuid.uuid4())


def gateway_error(
    status: int, path: str, message: str | None = None, errors: list[str] | None = None
) -> dict[str, Any]:
    """The gateway's body: {message, path, requestId, statusCode, timestamp[, errors]}."""
    body: dict[str, Any] = {
        "message": message or GATEWAY_MESSAGES.get(status) or _phrase(status),
        "path": path,
        "requestId": request_id(),
        "statusCode": status,
        "timestamp": _timestamp(),
    }
    if errors is not None:
        body["errors"] = errors
    return body


def gateway_headers(status: int) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())] if status == 429 else []


def vendor_error(
    message: str, code: str = "invalid_parameter_error", kind: str = "invalid_request_error"
) -> dict[str, Any]:
    """The vendor's OpenAI-compatible body: {"error": {code, message, type}, "request_id"}."""
    return {"error": {"code": code, "message": message, "type": kind}, "request_id": request_id()}


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _timestamp() -> str:
    # JavaScript's toISOString() form, as the gateway (a Node service) writes it.
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
