"""The models offered come from the upstream's GET /models (real client, loopback servers)."""

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chat import models_list
from chat.simulator.schema import MODELS


@pytest.fixture(autouse=True)
def _nothing_known():
    models_list.forget()
    yield
    models_list.forget()


@contextlib.contextmanager
def upstream(answer):
    """A loopback HTTP server; `answer(handler)` writes each response. Yields (base, requests)."""
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append((self.path, self.headers.get("Authorization")))
            answer(self)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()


def reply(handler, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@pytest.fixture
def other_upstream(settings):
    def use(base: str, key: str = "") -> None:
        settings.PLAYGROUND_USE_SIMULATOR = False
        settings.PLAYGROUND_API_BASE = base
        settings.PLAYGROUND_API_KEY = key

    settings.PLAYGROUND_MODELS = ["fallback/one", "fallback/two"]
    return use


def test_the_simulators_models_are_offered(upstream_is_simulator):
    assert models_list.offered_models() == list(MODELS)


def test_the_in_process_simulator_answers_too(settings):
    settings.PLAYGROUND_USE_SIMULATOR = True
    settings.PLAYGROUND_MODELS = ["fallback/one"]
    assert models_list.offered_models() == list(MODELS)


def test_the_upstreams_list_is_asked_with_the_key_and_replaces_the_fallback(other_upstream):
    body = {"object": "list", "data": [{"id": "vendor/a"}, {"id": "vendor/b"}]}
    with upstream(lambda h: reply(h, 200, body)) as (base, requests):
        other_upstream(base, key="sk-models-test")
        assert models_list.offered_models() == ["vendor/a", "vendor/b"]
    assert requests == [("/v1/models", "Bearer sk-models-test")]


def test_an_upstream_without_the_route_falls_back_to_the_configured_models(other_upstream):
    with upstream(lambda h: reply(h, 404, {"error": {"message": "Not found"}})) as (base, _):
        other_upstream(base)
        assert models_list.offered_models() == ["fallback/one", "fallback/two"]


def test_a_malformed_answer_falls_back(other_upstream):
    with upstream(lambda h: reply(h, 200, {"models": ["x"]})) as (base, _):
        other_upstream(base)
        assert models_list.offered_models() == ["fallback/one", "fallback/two"]


def test_a_silent_upstream_does_not_hold_the_page_and_its_failure_is_kept(other_upstream, settings):
    gate = threading.Event()

    def hang(handler):
        gate.wait(5)

    settings.PLAYGROUND_MODELS_TIMEOUT = 0.5
    with upstream(hang) as (base, requests):
        other_upstream(base)
        started = time.monotonic()
        assert models_list.offered_models() == ["fallback/one", "fallback/two"]
        assert time.monotonic() - started < models_list.FIRST_WAIT_SECONDS + 0.3
        time.sleep(0.8)  # the fetch times out in the background
        assert models_list.offered_models() == ["fallback/one", "fallback/two"]
        gate.set()
    assert len(requests) == 1  # the failure was cached: no second request


def test_the_list_is_kept_for_the_cache_period_then_asked_again(other_upstream, settings):
    def serve(handler):
        model = "vendor/a" if len(requests) == 1 else "vendor/b"
        reply(handler, 200, {"data": [{"id": model}]})

    with upstream(serve) as (base, requests):
        other_upstream(base)
        assert models_list.offered_models() == ["vendor/a"]
        assert models_list.offered_models() == ["vendor/a"]
        assert len(requests) == 1
        settings.PLAYGROUND_MODELS_CACHE_SECONDS = 0
        models_list.offered_models()  # stale: answered from what is known, refreshed behind
        deadline = time.monotonic() + 3
        while models_list.offered_models() != ["vendor/b"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert models_list.offered_models() == ["vendor/b"]
