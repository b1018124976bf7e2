"""A message sent while every turn slot of the server is taken: the page says it is busy and
retrying, keeps the text, and the message goes once a slot frees (chat/admission.py)."""

import sqlite3
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import live_app, log_in, screenshot

ASSISTANT = "[data-testid=message][data-role=assistant]"
USER = "[data-testid=message][data-role=user]"


@pytest.fixture(scope="module")
def one_slot_server():
    """One turn slot, and a second's wait for it before a send is answered busy."""
    with live_app({"PLAYGROUND_TURN_SLOTS": "1", "PLAYGROUND_TURN_WAIT_SECONDS": "1"}) as server:
        yield server


@contextmanager
def database_locked(server):
    """Hold SQLite's write lock: a turn being saved waits for it (its slot taken meanwhile)."""
    database = sqlite3.connect(
        Path(server.env["PLAYGROUND_DATA_DIR"]) / "playground.sqlite3", isolation_level=None
    )
    database.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        database.execute("ROLLBACK")
        database.close()


def open_chat(page, server, username: str, first: str) -> None:
    """A conversation page with its socket open (the first message goes by form post)."""
    log_in(page, server, username)
    page.goto(server.url + "/new/")
    page.fill("textarea[name=text]", f"{first} [sim:length=3]")
    page.click("[data-testid=send]")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")


def take_the_slot(context, url: str) -> None:
    """Another tab sends a message; its turn holds the one slot while the database is locked."""
    other = context.new_page()
    other.goto(url)
    other.fill("textarea[name=text]", "Holding the slot [sim:length=3]")
    other.press("textarea[name=text]", "Enter")
    expect(other.locator("[data-testid=send]")).to_be_disabled()


def test_a_message_sent_over_the_socket_while_busy_is_retried_and_goes(
    one_slot_server, new_context
):
    one_slot_server.create_user("busy-socket")
    context = new_context()
    page = context.new_page()
    open_chat(page, one_slot_server, "busy-socket", "Hello")
    composer = page.locator("textarea[name=text]")
    status = page.locator("#composer [data-testid=busy]")

    with database_locked(one_slot_server):
        take_the_slot(context, page.url)
        composer.fill("Sent while the server is busy")
        composer.press("Enter")
        expect(status).to_have_text("Busy, retrying…", timeout=5_000)
        expect(status).to_have_attribute("role", "status")
        expect(composer).to_have_value("Sent while the server is busy")
        screenshot(page, "busy-retrying")
    # The slot frees: the next try takes the message, as if it had gone the first time.
    expect(composer).to_have_value("", timeout=15_000)
    expect(status).to_have_count(0)
    expect(page.locator(USER).filter(has_text="Sent while the server is busy")).to_have_count(1)
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    expect(page.locator("#composer [data-testid=error]")).to_have_count(0)


def test_a_new_chat_posted_while_busy_is_retried_and_goes(one_slot_server, new_context):
    one_slot_server.create_user("busy-form")
    context = new_context()
    page = context.new_page()
    open_chat(page, one_slot_server, "busy-form", "Hello")
    conversation = page.url

    with database_locked(one_slot_server):
        take_the_slot(context, conversation)
        page.goto(one_slot_server.url + "/new/")  # no socket yet: the form posts it (503)
        composer = page.locator("textarea[name=text]")
        composer.fill("A new chat while busy")
        composer.press("Enter")
        status = page.locator("#composer [data-testid=busy]")
        expect(status).to_have_text("Busy, retrying…", timeout=5_000)
        expect(composer).to_have_value("A new chat while busy")
    page.wait_for_url(lambda url: "/c/" in url and url != conversation, timeout=15_000)
    expect(page.locator(USER).filter(has_text="A new chat while busy")).to_have_count(1)
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
