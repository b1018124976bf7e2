""" "View code": the exact request behind a reply as curl, Python (httpx) and JavaScript (fetch).

The key is never in a sample: each reads it from the PLAYGROUND_API_KEY environment variable.
Media were elided when the request was saved, so samples with media say so.
"""

import json
import shlex
from typing import Any

ENV = "PLAYGROUND_API_KEY"


def _body_json(body: dict[str, Any], indent: int | None = 2) -> str:
    return json.dumps(body, indent=indent, ensure_ascii=False)


def curl(url: str, body: dict[str, Any], with_key: bool) -> str:
    lines = [f"curl -N {shlex.quote(url)}", '  -H "Content-Type: application/json"']
    if with_key:
        lines.append(f'  -H "Authorization: Bearer ${ENV}"')
    lines.append(f"  -d {shlex.quote(_body_json(body))}")
    return " \\\n".join(lines)


def python(url: str, body: dict[str, Any], with_key: bool) -> str:
    key = "os.environ['" + ENV + "']"
    headers = '{"Authorization": f"Bearer {' + key + '}"}' if with_key else "{}"
    return f"""import json
import os

import httpx

body = json.loads({_body_json(body)!r})
with httpx.stream("POST", {url!r}, json=body, headers={headers}, timeout=120) as response:
    response.raise_for_status()
    for line in response.iter_lines():
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            continue
        chunk = json.loads(line[5:])
        for choice in chunk.get("choices", []):
            print(choice.get("delta", {{}}).get("content") or "", end="", flush=True)
print()
"""


def javascript(url: str, body: dict[str, Any], with_key: bool) -> str:
    auth = f"\n    Authorization: `Bearer ${{process.env.{ENV}}}`," if with_key else ""
    return f"""const response = await fetch({json.dumps(url)}, {{
  method: "POST",
  headers: {{
    "Content-Type": "application/json",{auth}
  }},
  body: JSON.stringify({_body_json(body)}),
}});
const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
let buffer = "";
for (;;) {{
  const {{ value, done }} = await reader.read();
  if (done) break;
  buffer += value;
  const lines = buffer.split("\\n");
  buffer = lines.pop();
  for (const line of lines) {{
    if (!line.startsWith("data:") || line.trim() === "data: [DONE]") continue;
    const chunk = JSON.parse(line.slice(5));
    for (const choice of chunk.choices ?? []) process.stdout.write(choice.delta?.content ?? "");
  }}
}}
"""


def samples(url: str, body: dict[str, Any], with_key: bool) -> dict[str, str]:
    return {
        "curl": curl(url, body, with_key),
        "python": python(url, body, with_key),
        "javascript": javascript(url, body, with_key),
    }


def has_elided_media(body: dict[str, Any]) -> bool:
    return "elided)" in json.dumps(body)
