"""First-token benchmark in a real browser: Enter pressed -> the reply's first text on the page,
for a new chat's first message and for a message in an open chat, against the same request sent
straight to the upstream.

    .venv/bin/python bench/first_token.py [--runs 15] [--warmup 3]
    .venv/bin/python bench/first_token.py --app-dir /path/to/another/checkout   # e.g. main

Method
------
Started here on loopback and stopped on exit (or Ctrl-C): the offline simulator with
bench/relay.py's recorder (it keeps each completion's request body, keyed by a `bench-...`
marker in the message), and the app as in bench/relay.py (`manage.py migrate` on a fresh data
dir, one server process as scripts/serve starts it, SQLite, the in-memory channel layer, DEBUG
off), from this checkout or from `--app-dir`. A real Chromium (/usr/bin/chromium through
Playwright, launched as tests/browser/conftest.py does) logs in once, then each run:

1. New chat: loads `/new/`, waits --settle seconds (a person takes longer to type: the page's
   socket, if it opens one, is open by then), fills the composer and presses Enter.
2. Open chat: loads that conversation's page, waits --settle seconds, sends a second message.

The page measures itself, with a script added to every document before its own
(`performance.timeOrigin + performance.now()`, one clock across the page loads a form post
causes; sessionStorage carries the stamps over them): Enter's keydown, in the capture phase
before the page's handlers, and the first moment a reply that was not on the page at Enter holds
text in its `[data-testid=message-content]` (a MutationObserver), i.e. the text is in the
document; the next animation frame after it (when it is painted) is reported beside it.

Each message is `bench-<kind>-<n> [sim:length=8] [sim:delay=0]`: eight tokens, no delay between
them, so the first token leaves the simulator as soon as the request is read (see relay.py).
Directly, for comparison, right after each run: the request body the app sent (from the
simulator's records, its marker swapped for one of the same length) POSTed by httpx to the same
simulator on a warm connection, read with httpx-sse to the first content delta. The first
--warmup runs are dropped. Figures: p50, min-max, and app - direct (the p50 of each run's
difference), with the machine (CPU model, cores usable, load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.relay import (  # noqa: E402
    HOST,
    Processes,
    app_environment,
    load_average,
    machine,
)
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.processes import free_port  # noqa: E402

USERNAME = "bench"
PASSWORD = "first-token-Pa55word"
ASSISTANT = "[data-testid=message][data-role=assistant]"
MESSAGE = "{marker} [sim:length=8] [sim:delay=0]"

# Added to every document before the page's own scripts: the page stamps Enter and the first
# text of a new reply itself (see the docstring). sessionStorage survives a form post's redirect.
STAMPS = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const store = sessionStorage;
  const replies = () => document.querySelectorAll("[data-testid=message][data-role=assistant]");
  addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.key !== "Enter" || event.shiftKey) return;
    if (!target.matches || !target.matches("#composer textarea")) return;
    store.setItem("bench-known", JSON.stringify(Array.from(replies(), (el) => el.id)));
    store.setItem("bench-enter", String(now()));
  }, true);
  function look() {
    if (!store.getItem("bench-enter") || store.getItem("bench-first")) return;
    const known = JSON.parse(store.getItem("bench-known") || "[]");
    for (const el of replies()) {
      if (known.includes(el.id)) continue;
      const content = el.querySelector("[data-testid=message-content]");
      if (content && content.textContent.trim()) {
        store.setItem("bench-first", String(now()));
        requestAnimationFrame(() => store.setItem("bench-frame", String(now())));
        return;
      }
    }
  }
  const everything = {childList: true, subtree: true, characterData: true};
  new MutationObserver(look).observe(document, everything);
})();
"""


@dataclass
class Figures:
    app_ms: list[float] = field(default_factory=list)  # Enter -> first reply text in the page
    frame_ms: list[float] = field(default_factory=list)  # Enter -> the frame after it
    direct_ms: list[float] = field(default_factory=list)  # POST -> first content delta


def prepare(env: dict, app_dir: Path) -> None:
    """`manage.py migrate` on the fresh data dir, and the person who logs in."""
    manage = [sys.executable, "manage.py"]
    subprocess.run(
        manage + ["migrate", "--noinput", "-v", "0"], cwd=app_dir, env=env, check=True, timeout=120
    )
    code = (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})"
    )
    subprocess.run(manage + ["shell", "-c", code], cwd=app_dir, env=env, check=True, timeout=60)


def server_command(app_dir: Path) -> list[str]:
    """How scripts/serve starts the app (daphne on the project's event loop), or plain daphne
    for a checkout from before playground/server.py."""
    if (app_dir / "playground" / "server.py").exists():
        return [sys.executable, "-m", "playground.server"]
    return [str(Path(sys.executable).with_name("daphne"))]


def chat_record(simulator_url: str, marker: str) -> dict:
    """The simulator's record of the reply to the message with `marker` (not the title request
    that follows a new conversation's first reply: it comes later)."""
    import httpx

    response = httpx.get(f"{simulator_url}/bench/records", params={"prefix": marker}, timeout=30)
    response.raise_for_status()
    return min(response.json(), key=lambda record: record["arrived"])


def direct_ms(client, body: str) -> float:
    """The same request straight to the simulator: POST -> first content delta, in ms."""
    from httpx_sse import connect_sse

    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    first = None
    posted = time.perf_counter()
    with connect_sse(client, "POST", "/chat/completions", content=body, headers=headers) as source:
        for event in source.iter_sse():
            if first is None and event.data != "[DONE]":
                choices = json.loads(event.data).get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter()
            # read to the end, so the connection goes back to the pool
    return (first - posted) * 1000


def log_in(page, app_url: str) -> None:
    page.goto(app_url + "/accounts/login/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def stamp(page, key: str, timeout: float = 30) -> float:
    """A stamp the page wrote, waiting for it across a page load."""
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = page.evaluate(f"sessionStorage.getItem({key!r})")
        except Error:  # the page is being replaced (a form post's redirect)
            value = None
        if value is not None:
            return float(value)
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never stamped {key}")
        time.sleep(0.02)


def send_and_time(page, text: str) -> tuple[float, float]:
    """Press Enter with `text` in the composer: (ms to the reply's first text, to the frame
    after it). Returns once the reply has finished."""
    from playwright.sync_api import expect

    composer = page.locator("textarea[name=text]")
    composer.fill(text)
    page.evaluate("sessionStorage.clear()")
    composer.press("Enter")
    frame = stamp(page, "bench-frame")
    enter, first = stamp(page, "bench-enter"), stamp(page, "bench-first")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    return first - enter, frame - enter


def measure(args, app_url: str, simulator_url: str) -> dict[str, Figures]:
    import httpx
    from playwright.sync_api import sync_playwright

    figures = {"new chat": Figures(), "open chat": Figures()}
    direct = httpx.Client(base_url=simulator_url, timeout=30)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.set_default_timeout(30_000)
            context.add_init_script(STAMPS)
            page = context.new_page()
            log_in(page, app_url)
            for n in range(args.warmup + args.runs):
                for kind, short in (("new chat", "fnew"), ("open chat", "fopen")):
                    if kind == "new chat":
                        page.goto(app_url + "/new/")
                    else:
                        page.goto(page.url)  # the conversation the new chat became, loaded
                    page.wait_for_timeout(args.settle * 1000)
                    marker = f"bench-{short}-{n:03d}"
                    app, frame = send_and_time(page, MESSAGE.format(marker=marker))
                    page.wait_for_timeout(args.settle * 1000)  # the title request, if any
                    record = chat_record(simulator_url, marker)
                    body = record["request"].replace(marker, marker.replace("bench-f", "bench-d"))
                    straight = direct_ms(direct, body)
                    if n >= args.warmup:
                        figures[kind].app_ms.append(app)
                        figures[kind].frame_ms.append(frame)
                        figures[kind].direct_ms.append(straight)
                print(f"run {n + 1}/{args.warmup + args.runs}", file=sys.stderr, flush=True)
        finally:
            browser.close()
            direct.close()
    return figures


def code_of(app_dir: Path) -> str:
    """Which code the app ran: its checkout's branch and commit, and whether it had changes."""

    def git(*words: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(app_dir), *words], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip()

    branch = git("rev-parse", "--abbrev-ref", "HEAD") or "?"
    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{app_dir} ({branch} {commit}{dirty})"


def spread(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}"


def report(args, figures: dict[str, Figures], app_dir: Path, loads: tuple[str, str]) -> str:
    lines = [
        "## First token in the browser: Enter -> the reply's first text",
        "",
        f"- app: {code_of(app_dir)}",
        f"- machine: {machine()}; load average before {loads[0]}, after {loads[1]}",
        f"- {args.runs} runs after {args.warmup} warm-up runs; messages "
        f"`{MESSAGE.format(marker='bench-...')}`; {args.settle:g} s between loading a page "
        "and pressing Enter",
        "",
        "| path | app p50 ms | app min-max | direct p50 ms | direct min-max "
        "| app - direct p50 ms | painted p50 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, f in figures.items():
        differences = [a - d for a, d in zip(f.app_ms, f.direct_ms, strict=True)]
        lines.append(
            f"| {kind} | {statistics.median(f.app_ms):.1f} | {spread(f.app_ms)} "
            f"| {statistics.median(f.direct_ms):.1f} | {spread(f.direct_ms)} "
            f"| {statistics.median(differences):.1f} | {statistics.median(f.frame_ms):.1f} |"
        )
    lines += [
        "",
        "app: Enter's keydown -> the reply's text in the document; painted: -> the animation "
        "frame after it. direct: the same request body POSTed straight to the simulator -> "
        "its first content delta (httpx-sse). app - direct: the median of each run's "
        "difference.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs (default 15)")
    parser.add_argument("--warmup", type=int, default=3, help="runs dropped first (default 3)")
    parser.add_argument(
        "--settle", type=float, default=0.5, help="seconds between a page load and Enter"
    )
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=REPO,
        help="the checkout the app runs from (default: this one), e.g. a worktree of main",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    app_dir = args.app_dir.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="first-token-bench-"))
    try:
        with Processes(workdir) as processes:
            sim_port, app_port = free_port(), free_port()
            simulator_url = f"http://{HOST}:{sim_port}/v1"
            print("starting the simulator and the app ...", file=sys.stderr, flush=True)
            processes.start(
                "simulator",
                [sys.executable, str(REPO / "bench" / "relay.py"), "--serve-simulator"]
                + [str(sim_port), "0.001"],
                sim_port,
                {**os.environ, "PYTHONPATH": str(REPO)},
            )
            env = app_environment(workdir / "data", simulator_url)
            prepare(env, app_dir)
            processes.start(
                "app",
                [*server_command(app_dir), "-b", HOST, "-p", str(app_port)]
                + ["playground.asgi:application"],
                app_port,
                env,
                cwd=app_dir,
            )
            before = load_average()
            try:
                figures = measure(args, f"http://{HOST}:{app_port}", simulator_url)
            except Exception:
                print(processes.logs(), file=sys.stderr)
                raise
            after = load_average()
        print(report(args, figures, app_dir, (before, after)))
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
