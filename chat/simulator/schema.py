"""Validation of chat-completion request bodies against the published OpenAPI schema.

`request_errors` is what the simulator answers 400 with, and what the app's tests use to prove
that every request the app builds would pass the gateway's own validation.
"""

import functools
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator

SCHEMA_PATH = Path(__file__).with_name("chat-completions.openapi.json")
ENDPOINT = "/v1/chat/completions"

# The published schema is the flash model's page, so its model enum lists only flash. The gateway
# serves the plus model through the same request shape, so the simulator accepts both; any other
# model is still a 400, as at the gateway.
MODELS = ("alibaba/qwen3.5-omni-flash", "alibaba/qwen3.5-omni-plus")

# A reason quotes the offending value; a data URL can be megabytes long, so cut it.
MAX_REASON_CHARS = 300

# Properties whose value picks the branch of a oneOf/anyOf (a message's role, a part's type).
DISCRIMINATORS = ("role", "type")


def request_schema() -> dict[str, Any]:
    """The JSON schema of the request body, with the model enum widened to MODELS."""
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    body = document["paths"][ENDPOINT]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    schema["properties"]["model"]["enum"] = list(MODELS)
    return schema


@functools.cache
def _validator() -> OAS30Validator:
    # No format checker: "format: uri" would then depend on optional packages, and the gateway
    # takes data URLs and bare base64 where the schema says uri.
    return OAS30Validator(request_schema())


def request_errors(body: object) -> list[str]:
    """Human-readable reasons why `body` is not a valid request; an empty list means valid."""
    errors = sorted(_validator().iter_errors(body), key=lambda e: _path(e.absolute_path))
    reasons: list[str] = []
    for error in errors:
        for reason in _explain(error):
            if reason not in reasons:
                reasons.append(reason)
    return reasons


def _path(parts: Iterable[str | int]) -> str:
    """JSON path in the dotted form users read: messages[0].content[1].type."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "body"


def _reason(error: ValidationError, message: str | None = None) -> str:
    message = message or error.message
    if len(message) > MAX_REASON_CHARS:
        message = message[: MAX_REASON_CHARS - 1] + "…"
    return f"{_path(error.absolute_path)}: {message}"


def _is_branch_mismatch(error: ValidationError) -> bool:
    """True when an error shows the value was never meant for this branch (wrong role, type)."""
    path = list(error.relative_path)
    if error.validator == "type" and not path:
        return True
    return error.validator in ("enum", "const") and len(path) == 1 and path[0] in DISCRIMINATORS


def _explain(error: ValidationError) -> list[str]:
    """Reasons for one error; oneOf/anyOf failures are narrowed to the branch that was meant.

    jsonschema's own message for those is "... is not valid under any of the given schemas",
    which names neither the field nor the problem.
    """
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [_reason(error)]
    branches: dict[int, list[ValidationError]] = defaultdict(list)
    for sub in error.context:
        branches[sub.schema_path[0]].append(sub)
    meant = [subs for subs in branches.values() if not any(map(_is_branch_mismatch, subs))]
    if meant:
        # Several candidates (say, a message without a role): the one with the fewest problems.
        best = min(meant, key=len)
        return [reason for sub in best for reason in _explain(sub)]
    allowed: list[str] = []
    discriminator: ValidationError | None = None
    for subs in branches.values():
        for sub in subs:
            if sub.validator in ("enum", "const") and list(sub.relative_path):
                discriminator = discriminator or sub
                values = sub.validator_value if sub.validator == "enum" else [sub.validator_value]
                allowed += [repr(v) for v in values if repr(v) not in allowed]
            elif sub.validator == "type":
                kinds = (
                    sub.validator_value
                    if isinstance(sub.validator_value, list)
                    else [sub.validator_value]
                )
                allowed += [str(k) for k in kinds if str(k) not in allowed]
    if discriminator is not None:
        message = f"{discriminator.instance!r} is not one of {', '.join(allowed)}"
        return [_reason(discriminator, message)]
    if allowed:
        message = f"expected {' or '.join(allowed)}, got {type(error.instance).__name__}"
        return [_reason(error, message)]
    return [_reason(error)]
