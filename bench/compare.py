"""Compare benchmark in a real browser: four columns streaming at once, each reply's frames a
second on the page's socket, and the page's main thread (long tasks) while they stream.

    .venv/bin/python bench/compare.py [--runs 5] [--tokens 400] [--delay 0.01]

Method
------
Started here on loopback and stopped on exit: the offline simulator (bench/relay.py's, one
process) and the app as bench/first_token.py starts it (SQLite, in-memory channel layer, DEBUG
off, from this checkout). A real Chromium (1280x860) logs in, sends a first message, then opens
the conversation with four columns set up (`?compare=4`: the default model, the other model,
the default model at temperature 0.2, the other model with at most 300 tokens) and, each run,
sends `[sim:length=N] [sim:delay=D]` to all four: N tokens each, D seconds apart (400 tokens at
0.01 s: 100 tokens a second per reply, faster than the page's 20 frames a second, so every
frame carries several tokens and the Markdown grows block by block).

Measured in the page: a PerformanceObserver of `longtask` entries (tasks over 50 ms on the main
thread) from the send to the last column's end (checked first: an 80 ms task made on purpose
must be seen); Playwright's view of the socket: the delta
frames of each reply (`{"d": id, ...}`) and the most of them in any one second. The columns'
replies are then kept (the first) so the next run starts from a decided conversation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.first_token import log_in, prepare, server_command  # noqa: E402
from bench.relay import HOST, Processes, app_environment, load_average, machine  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.processes import free_port  # noqa: E402

COLUMNS = "[data-testid=compare-column]"
PLUS = "alibaba/qwen3.5-omni-plus"
LONG_TASKS = """
(() => {
  window.benchLongTasks = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      window.benchLongTasks.push([entry.startTime, entry.duration]);
    }
  }).observe({ type: "longtask", buffered: true });
})();
"""


def set_up_columns(page) -> None:
    setup = page.locator("#compare-setup")
    setup.locator("select[name=columns-1-model]").select_option(PLUS)
    setup.locator("select[name=columns-3-model]").select_option(PLUS)
    for n, name, value in ((2, "temperature", "0.2"), (3, "max_tokens", "300")):
        setup.locator(f"[data-testid=compare-setup-column][data-column='{n + 1}'] summary").click()
        setup.locator(f"input[name=columns-{n}-{name}]").fill(value)


def one_run(page, frames: list[tuple[float, int]], text: str) -> dict:
    from playwright.sync_api import expect

    frames.clear()
    start = page.evaluate("performance.now()")
    page.fill("textarea[name=text]", text)
    page.click("[data-testid=send]")
    columns = page.locator(COLUMNS)
    expect(columns).to_have_count(4, timeout=30_000)
    for n in range(4):
        expect(columns.nth(n).locator("[data-testid=message]")).to_have_attribute(
            "data-status", "complete", timeout=120_000
        )
    end = page.evaluate("performance.now()")
    found = [(t, d) for t, d in page.evaluate("window.benchLongTasks") if start <= t <= end]
    tasks = [d for _t, d in found]
    per_reply: dict[int, list[float]] = {}
    for at, message in frames:
        per_reply.setdefault(message, []).append(at)
    busiest = 0
    for times in per_reply.values():
        for n, t in enumerate(times):
            busiest = max(busiest, sum(1 for u in times[n:] if u - t < 1.0))
    columns.nth(0).locator("[data-testid=keep]").click()
    expect(columns).to_have_count(0)
    return {
        "seconds": (end - start) / 1000,
        "long_tasks": len(tasks),
        "longest_ms": max(tasks, default=0.0),
        "replies": len(per_reply),
        "frames_per_reply": statistics.median(len(t) for t in per_reply.values()),
        "frames_a_second": statistics.median(
            (len(t) - 1) / (t[-1] - t[0]) for t in per_reply.values() if t[-1] > t[0]
        ),
        "busiest_second": busiest,
        "long_tasks_at": [(round((t - start) / 1000, 2), round(d)) for t, d in found],
    }


def measure(args, app_url: str) -> list[dict]:
    from playwright.sync_api import expect, sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        context.add_init_script(LONG_TASKS)
        page = context.new_page()
        frames: list[tuple[float, int]] = []

        def on_socket(socket):
            def received(payload):
                if isinstance(payload, str) and payload.startswith('{"d":'):
                    head = payload.split("\n", 1)[0]
                    frames.append((time.monotonic(), json.loads(head)["d"]))

            socket.on("framereceived", received)

        page.on("websocket", on_socket)
        log_in(page, app_url)
        page.goto(app_url + "/new/")
        # The observer is trusted only once it has seen a long task made on purpose.
        page.evaluate(
            "setTimeout(() => { const t = performance.now(); while (performance.now() - t < 80); })"
        )
        page.wait_for_timeout(300)
        seen = page.evaluate("window.benchLongTasks.map(([, d]) => d)")
        if not any(d >= 80 for d in seen):
            raise RuntimeError(f"the long-task observer saw no 80 ms task: {seen}")
        page.fill("textarea[name=text]", "Hello [sim:length=5] [sim:delay=0]")
        page.click("[data-testid=send]")
        expect(page.locator("[data-testid=compare]")).to_be_visible(timeout=30_000)
        page.goto(page.url.split("?")[0] + "?compare=4")
        set_up_columns(page)
        text = f"Compare [sim:length={args.tokens}] [sim:delay={args.delay}]"
        for n in range(args.runs):
            results.append(one_run(page, frames, text))
            print(f"run {n + 1}: {results[-1]}", file=sys.stderr, flush=True)
            page.goto(page.url.split("?")[0] + "?compare=4")
            set_up_columns(page)
        browser.close()
    return results


def report(args, results: list[dict], loads: tuple[str, str]) -> str:
    def spread(key: str, digits: int = 1) -> str:
        values = [r[key] for r in results]
        return (
            f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})"
        )

    lines = [
        f"Compare: 4 columns, {args.tokens} tokens each {args.delay} s apart, {args.runs} runs",
        f"machine: {machine()}; load before {loads[0]}, after {loads[1]}",
        "median (min-max) over the runs",
        "",
        "| measure | figure | target |",
        "| --- | --- | --- |",
        f"| replies streaming at once | {spread('replies', 0)} | 4 |",
        f"| time for all four | {spread('seconds', 2)} s | |",
        f"| delta frames per reply | {spread('frames_per_reply', 0)} | |",
        f"| frames a second per reply, first to last | {spread('frames_a_second', 1)} | about 20 |",
        f"| most frames of one reply in one second | {spread('busiest_second', 0)} | |",
        f"| main-thread tasks over 50 ms while streaming | {spread('long_tasks', 0)} | 0 |",
        f"| longest such task, ms | {spread('longest_ms', 1)} | none over 50 |",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="compare-bench-"))
    try:
        with Processes(workdir) as processes:
            sim_port, app_port = free_port(), free_port()
            simulator_url = f"http://{HOST}:{sim_port}/v1"
            processes.start(
                "simulator",
                [sys.executable, str(REPO / "bench" / "relay.py"), "--serve-simulator"]
                + [str(sim_port), "0.001"],
                sim_port,
                {**os.environ, "PYTHONPATH": str(REPO)},
            )
            env = app_environment(workdir / "data", simulator_url)
            prepare(env, REPO)
            processes.start(
                "app",
                [*server_command(REPO), "-b", HOST, "-p", str(app_port)]
                + ["playground.asgi:application"],
                app_port,
                env,
                cwd=REPO,
            )
            before = load_average()
            try:
                results = measure(args, f"http://{HOST}:{app_port}")
            except Exception:
                print(processes.logs(), file=sys.stderr)
                raise
            after = load_average()
        print(report(args, results, (before, after)))
        return 0
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
