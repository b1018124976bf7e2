"""Live Markdown: server CPU per frame at the start and at the end of a 10,000-token reply, and
the bytes the page receives for it against the finished HTML.

The reply (headings, paragraphs with inline Markdown, lists, fenced code, tables, display and
inline math) is cut into word-sized tokens as the simulator streams them and fed, a frame's worth
at a time, through what the job and the consumer do per frame: `LiveMarkdown.feed` and `advance`
(block boundaries, each completed block rendered and sanitised) and the page's delta frame
(`chat.frames.delta_frame`: a JSON line, then the completed blocks' HTML), for a message id of
four digits. The final frame's last blocks are counted (`blocks_html`); the
finished message's frame around them (the article with its footer and actions, the content kept
by the page) is the same few hundred bytes whatever the reply, and is left out.

Run by hand: `.venv/bin/python bench/live_markdown.py [tokens] [tokens-per-frame] [runs]`.
Prints a Markdown table.
"""

import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECTION = """## Section {n}

This part explains **item {n}** with `inline code`, a [link](https://example.com/{n}) and the
formula $E = mc^2$, then lists what matters:

- the first point, with *emphasis*
- the second point, which runs a little longer than the first one does
  - a nested detail
- the third point

```python
def section_{n}(values: list[int]) -> int:
    total = 0
    for value in values:
        if value % 2 == 0:
            total += value * {n}
    return total
```

| name | value | note |
|:-----|------:|:----:|
| alpha | {n} | first |
| beta | {n}.5 | second |
| gamma | 3 | third |

$$
\\sum_{{k=1}}^{{{n}}} k = \\frac{{{n}({n}+1)}}{{2}}
$$

> A quoted remark about section {n}, to close it.

"""


def reply_tokens(count: int) -> list[str]:
    from chat.simulator.reply import split_tokens

    tokens: list[str] = []
    n = 1
    while len(tokens) < count:
        tokens += split_tokens(SECTION.format(n=n))
        n += 1
    return tokens[:count]


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def stream_once(tokens: list[str], per_frame: int) -> dict:
    from chat.consumers import blocks_html
    from chat.frames import delta_frame
    from chat.live_markdown import LiveMarkdown, render_blocks

    live = LiveMarkdown()
    cpu: list[float] = []
    wire = 0
    parts = {"text": 0, "blocks": 0, "framing": 0}
    for start in range(0, len(tokens), per_frame):
        delta = "".join(tokens[start : start + per_frame])
        began = time.process_time()
        text = live.feed(delta)
        blocks = live.advance()
        html = "".join(blocks) if blocks else None
        frame = delta_frame(1234, text=text, blocks=html, tail=live.tail)
        cpu.append(time.process_time() - began)
        size = len(frame.encode())
        wire += size
        parts["text"] += len(text.encode())
        parts["blocks"] += len(html.encode()) if html else 0
        parts["framing"] += size - len(text.encode()) - (len(html.encode()) if html else 0)
    last = blocks_html(1234, "text", "".join(live.advance(final=True))).encode()
    wire += len(last)
    parts["blocks"] += len(last)
    html = live.html()
    assert html == render_blocks("".join(tokens))
    tenth = max(1, len(cpu) // 10)
    return {
        "frames": len(cpu),
        "start": statistics.mean(cpu[:tenth]),
        "end": statistics.mean(cpu[-tenth:]),
        "wire": wire,
        **parts,
        "html": len(html.encode()),
        "source": len("".join(tokens).encode()),
    }


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    os.environ.setdefault("PLAYGROUND_DATA_DIR", "/tmp/bench-live-markdown")
    import django

    django.setup()
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    per_frame = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    tokens = reply_tokens(count)
    results = [stream_once(tokens, per_frame) for _ in range(runs)]
    start = statistics.median(r["start"] for r in results)
    end = statistics.median(r["end"] for r in results)
    r = results[0]
    ratio_cpu = end / start
    ratio_wire = r["wire"] / r["html"]
    print(f"Live Markdown, {count:,} tokens, {per_frame} tokens a frame ({r['frames']:,} frames), ")
    print(f"median of {runs} runs on {machine()}\n")
    print("| figure | value | bar |")
    print("| --- | --- | --- |")
    ratios = sorted(r["end"] / r["start"] for r in results)

    def spread(values) -> str:
        values = sorted(values)
        return f"{values[0] * 1000:.3f} to {values[-1] * 1000:.3f}"

    print(
        f"| CPU per frame, first tenth of the reply | {start * 1000:.3f} ms "
        f"({spread(r['start'] for r in results)}) | |"
    )
    print(
        f"| CPU per frame, last tenth of the reply | {end * 1000:.3f} ms "
        f"({spread(r['end'] for r in results)}) | |"
    )
    print(
        f"| end / start | {ratio_cpu:.2f}x (runs {ratios[0]:.2f} to {ratios[-1]:.2f}) | "
        f"<= 1.5x {'ok' if ratio_cpu <= 1.5 else 'MISSED'} |"
    )
    print(f"| Markdown source | {r['source']:,} bytes | |")
    print(f"| finished HTML | {r['html']:,} bytes | |")
    print(f"| sent to the page for the reply | {r['wire']:,} bytes | |")
    print(f"| of which text as it arrives | {r['text']:,} bytes | |")
    blocks = f"{r['blocks']:,} bytes"
    print(f"| of which blocks (rendered once, the last in the final frame) | {blocks} | |")
    print(f"| of which the frames' JSON (ids, keys, escapes) | {r['framing']:,} bytes | |")
    print(
        f"| sent / finished HTML | {ratio_wire:.2f}x | <= 1.5x "
        f"{'ok' if ratio_wire <= 1.5 else 'MISSED'} |"
    )


if __name__ == "__main__":
    main()
