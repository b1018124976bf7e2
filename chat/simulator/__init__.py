"""The offline simulator: an OpenAI-compatible `/chat/completions` upstream that is not a model.

It answers while no API key is configured. It validates each request against the published
schema, then streams a deterministic Markdown report of what it received (attachments measured
from their bytes), with reasoning, PCM audio, logprobs, tool calls and usage when asked for.
`[sim:...]` directives in the last user message trigger failures (see `directives`).

Pure ASGI, no Django: run it with `python -m chat.simulator`, or in-process with
`httpx.AsyncClient(transport=SimulatorTransport(create_app()), base_url="http://simulator/v1")`.
"""

from .app import create_app
from .schema import request_errors
from .transport import SimulatorTransport

__all__ = ["SimulatorTransport", "create_app", "request_errors"]
