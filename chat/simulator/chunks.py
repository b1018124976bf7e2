"""Stream events in the shape of OpenAI's `chat.completion.chunk`, as the vendor sends them."""

import json
import math
import zlib
from typing import Any

# Invented prices: the simulator charges nothing, but the app shows cost, so give it numbers.
USD_PER_PROMPT_TOKEN = 0.4e-6
USD_PER_COMPLETION_TOKEN = 1.6e-6
CREDITS_PER_USD = 2_000_000
# Alternatives offered in top_logprobs after the token itself; top_logprobs may ask for 20 and
# the token may be one of these, hence 21.
ALTERNATIVES = tuple(
    "the a and of to in is it that for on with as this by at from or an be not".split()
)


def sse(payload: dict[str, Any] | str) -> bytes:
    """One server-sent event; a str payload is sent as is (for [DONE] and malformed data)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def chunk(
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}
        ],
    }


def usage_chunk(
    completion_id: str, created: int, model: str, usage: dict[str, Any]
) -> dict[str, Any]:
    """The closing chunk: no choices, the usage, and the gateway's `meta.usage` cost."""
    usd = (
        usage["prompt_tokens"] * USD_PER_PROMPT_TOKEN
        + usage["completion_tokens"] * USD_PER_COMPLETION_TOKEN
    )
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
        "meta": {
            "usage": {"credits_used": math.ceil(usd * CREDITS_PER_USD), "usd_spent": round(usd, 8)}
        },
    }


def error_event(message: str) -> dict[str, Any]:
    return {"error": {"code": "internal_error", "message": message, "type": "server_error"}}


def fake_logprob(token: str, rank: int = 0) -> float:
    """A stable, plausible log probability: the token itself near 0, alternatives lower."""
    jitter = (zlib.crc32(f"{rank}:{token}".encode()) % 1000) / 1000
    return round(-(0.05 + jitter * 0.5) - rank * 1.5, 4)


def logprobs_for(token: str, top: int) -> dict[str, Any]:
    """`choices[0].logprobs` for one content token, with `top` alternatives."""
    alternatives = [token] + [a + " " for a in ALTERNATIVES if a + " " != token]
    return {
        "content": [
            {
                "token": token,
                "logprob": fake_logprob(token),
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {
                        "token": alt,
                        "logprob": fake_logprob(alt if rank else token, rank),
                        "bytes": list(alt.encode()),
                    }
                    for rank, alt in enumerate(alternatives[:top])
                ],
            }
        ],
        "refusal": None,
    }
