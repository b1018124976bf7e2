"""Voice calls in a real Chromium whose microphone plays an espeak-ng recording (and whose camera
is Chromium's test pattern): speech detection in the page, each utterance sent as a WAV (or a
camera video), spoken replies played, barge-in, mute, End, and what the panel says when things
go wrong. The app's simulator answers."""

import json
import time
from contextlib import contextmanager

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, log_in, screenshot
from tests.browser.test_accessibility_browser import LAYOUTS, SCHEMES, axe_violations
from tests.speech_files import espeak_available, fake_microphone_args, make_speech_wav

pytestmark = pytest.mark.skipif(
    not espeak_available(),
    reason="espeak-ng is not installed (Debian: apt-get install espeak-ng), so no speech to play",
)

# The page's speech detection adds a lead (300 ms) and ends an utterance after a 0.7 s pause:
# a sent utterance holds all of the speech and at most this much more.
PAD = 0.3 + 0.7
FIRST = "The morning was bright and cool, so we walked along the river to the old market"
SECOND = "Then the bells of the church rang twelve and we hurried home"


@contextmanager
def browser_hearing(chromium, path, **options):
    browser = chromium.browser_type.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS + fake_microphone_args(path)
    )
    try:
        context = browser.new_context(permissions=["microphone", "camera"], **options)
        context.set_default_timeout(20_000)
        yield context
    finally:
        browser.close()


def conversation_page(context, server, user, settings=None):
    """A logged-in page on a conversation of `user` with one finished exchange."""
    server.create_user(user)
    page = context.new_page()
    log_in(page, server, user)
    page.goto(server.url + "/new/")
    page.fill("#composer textarea", "Hello")
    page.keyboard.press("Enter")
    page.wait_for_url("**/c/*/")
    page.wait_for_selector("[data-role=assistant][data-status=complete]")
    conversation = int(page.url.rstrip("/").split("/")[-1])
    if settings is not None:
        server.manage(
            "shell",
            "-c",
            "from chat.models import Conversation; "
            f"Conversation.objects.filter(pk={conversation}).update(settings={settings!r})",
        )
    return page, conversation


def call_log(page) -> list[dict]:
    return page.evaluate("() => window.playgroundCall.log")


def wait_for_log(page, kind: str, count: int = 1, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in call_log(page) if e["type"] == kind]
        if len(found) >= count:
            return found
        page.wait_for_timeout(100)
    raise AssertionError(f"no {count} x {kind!r} in the call's log: {json.dumps(call_log(page))}")


def state(page) -> str:
    return page.get_attribute("[data-testid=call-panel]", "data-call-state")


def messages(server, conversation: int) -> list[dict]:
    """The conversation's saved messages, with their attachments and saved request bodies."""
    code = (
        "import json; from chat.models import Message; print(json.dumps([{"
        "'id': m.pk, 'role': m.role, 'status': m.status, 'content': m.content, "
        "'request': m.request, 'files': [{'kind': a.kind, 'type': a.sent_content_type, "
        "'duration': a.duration, 'codecs': a.codecs} for a in m.attachments.all()]} "
        f"for m in Message.objects.filter(conversation_id={conversation}).order_by('pk')]))"
    )
    printed = server.manage("shell", "--no-imports", "-c", code)
    return json.loads(printed.strip().splitlines()[-1])


def test_two_utterances_become_two_spoken_turns_and_end_lets_go_of_the_microphone(
    chromium, app_server, tmp_path
):
    made = make_speech_wav(
        tmp_path / "two.wav",
        [
            ("silence", 2.0),
            ("speech", FIRST),
            ("silence", 4.0),
            ("speech", SECOND),
            ("silence", 30),
        ],
    )
    with browser_hearing(chromium, made.path) as context:
        page, conversation = conversation_page(context, app_server, "caller")
        page.click("[data-testid=call]")
        wait_for_log(page, "ready")
        assert page.is_visible("[data-testid=call-panel]")
        assert not page.is_visible("#composer")
        sent = wait_for_log(page, "sent", 2)
        wait_for_log(page, "speaking-end", 2)
        assert state(page) == "listening"
        assert page.text_content("[data-testid=call-caption]").startswith("Offline simulator")
        screenshot(page, "call-panel")

        saved = messages(app_server, conversation)
        said = [m for m in saved if m["id"] in {s["message"] for s in sent}]
        replies = [m for m in saved if m["id"] in {s["reply"] for s in sent}]
        assert len(said) == 2 and len(replies) == 2
        for message, segment in zip(said, made.segments, strict=True):
            (file,) = message["files"]
            assert (file["kind"], file["type"], message["content"]) == ("audio", "audio/wav", "")
            # All of the speech, and no more than the detector's lead and closing pause.
            assert segment.seconds <= file["duration"] <= (segment.seconds + PAD) * 1.1
        for reply, message in zip(replies, said, strict=True):
            assert reply["status"] == "complete"
            assert reply["request"]["modalities"] == ["text", "audio"]
            part = reply["request"]["messages"][-1]["content"][0]
            assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
            # What the simulator measured of what it received: the WAV's own length.
            heard = f"I heard {message['files'][0]['duration']:.1f} seconds of audio"
            assert heard in reply["content"]
            assert [f["kind"] for f in reply["files"]] == ["audio"]  # the spoken answer, saved
        # The replies were played as they streamed.
        firsts = wait_for_log(page, "audio-first", 2)
        assert {e["message"] for e in firsts} == {r["id"] for r in replies}
        assert float(page.evaluate("() => document.body.dataset.speechSeconds")) > 1
        assert float(page.evaluate("() => document.body.dataset.speechPeak")) > 0.1

        page.click("[data-testid=call-end]")
        assert not page.is_visible("[data-testid=call-panel]")
        assert page.is_visible("#composer")
        tracks = page.evaluate(
            "() => window.playgroundCall.lastTracks.map(t => [t.kind, t.readyState])"
        )
        assert tracks and all(ready == "ended" for _, ready in tracks)


def test_speaking_over_the_answer_stops_it_at_once_and_the_new_utterance_goes(
    chromium, app_server, tmp_path
):
    # A slow model (a token every 0.15 s), and the second utterance 1.8 s after the first.
    made = make_speech_wav(
        tmp_path / "barge.wav",
        [
            ("silence", 2.0),
            ("speech", FIRST),
            ("silence", 1.8),
            ("speech", SECOND),
            ("silence", 30),
        ],
    )
    with browser_hearing(chromium, made.path) as context:
        page, conversation = conversation_page(
            context, app_server, "interrupter", {"system_prompt": "[sim:delay=0.15]"}
        )
        page.click("[data-testid=call]")
        (barge,) = wait_for_log(page, "barge-in")
        first = wait_for_log(page, "sent")[0]
        assert barge["message"] == first["reply"]
        assert barge["silent"] - barge["at"] < 100  # silent within 100 ms
        # Nothing of that reply is scheduled any more, and the server saved it stopped.
        stopped = wait_for_log(page, "reply-stopped")[0]
        assert stopped["message"] == first["reply"]
        second = wait_for_log(page, "sent", 2)[1]
        saved = {m["id"]: m for m in messages(app_server, conversation)}
        assert saved[first["reply"]]["status"] == "stopped"
        assert second["message"] in saved and saved[second["message"]]["files"]
        page.wait_for_selector(f"#message-{first['reply']}[data-status=stopped]")


def test_muted_nothing_is_sent(chromium, app_server, tmp_path):
    made = make_speech_wav(
        tmp_path / "muted.wav", [("silence", 3.0), ("speech", FIRST), ("silence", 30)]
    )
    with browser_hearing(chromium, made.path) as context:
        page, conversation = conversation_page(context, app_server, "muted")
        page.click("[data-testid=call]")
        wait_for_log(page, "ready")
        page.click("[data-testid=call-mute]")
        assert page.get_attribute("[data-testid=call-mute]", "aria-pressed") == "true"
        assert page.text_content("[data-call-label]") == "Muted"
        page.wait_for_timeout((made.segments[0].end + 1.5) * 1000)
        assert not [e for e in call_log(page) if e["type"] in ("speech-end", "sent")]
        assert len(messages(app_server, conversation)) == 2  # the first exchange only


def test_holding_space_talks_and_the_pause_detector_stays_out_of_it(chromium, app_server, tmp_path):
    made = make_speech_wav(
        tmp_path / "ptt.wav", [("silence", 3.0), ("speech", FIRST), ("silence", 30)]
    )
    with browser_hearing(chromium, made.path) as context:
        page, conversation = conversation_page(context, app_server, "walkie")
        page.click("[data-testid=call]")
        (ready,) = wait_for_log(page, "ready")
        opened = ready["at"] / 1000
        # Hold Space from half a second before the speech to half a second after it.
        page.wait_for_timeout(max(0, (opened + made.segments[0].start - 0.5 - time.time()) * 1000))
        page.keyboard.down(" ")
        assert state(page) == "hearing"
        held = time.time()
        page.wait_for_timeout(max(0, (opened + made.segments[0].end + 0.5 - time.time()) * 1000))
        page.keyboard.up(" ")
        held = time.time() - held
        (sent,) = wait_for_log(page, "sent")
        wait_for_log(page, "speaking-end")
        page.wait_for_timeout(1500)  # the detector's own end of that speech came and went
        ends = [e for e in call_log(page) if e["type"] == "speech-end"]
        assert len(ends) == 1 and ends[0].get("ptt") is True
        assert len([e for e in call_log(page) if e["type"] == "sent"]) == 1
        assert ends[0]["seconds"] == pytest.approx(held, abs=0.25)
        (file,) = {m["id"]: m for m in messages(app_server, conversation)}[sent["message"]]["files"]
        assert file["duration"] == pytest.approx(ends[0]["seconds"], abs=0.05)


def test_with_the_camera_on_an_utterance_goes_as_an_mp4_video_with_its_sound(
    chromium, app_server, tmp_path
):
    made = make_speech_wav(
        tmp_path / "camera.wav", [("silence", 4.0), ("speech", FIRST), ("silence", 30)]
    )
    with browser_hearing(chromium, made.path) as context:
        page, conversation = conversation_page(context, app_server, "camera")
        page.click("[data-testid=call]")
        wait_for_log(page, "ready")
        page.click("[data-testid=call-camera]")
        page.wait_for_function(
            "v => v.readyState >= 2", arg=page.query_selector("[data-call-preview]")
        )
        (sent,) = wait_for_log(page, "sent")
        wait_for_log(page, "speaking-end")
        saved = {m["id"]: m for m in messages(app_server, conversation)}
        (file,) = saved[sent["message"]]["files"]
        assert (file["kind"], file["type"]) == ("video", "video/mp4")
        part = saved[sent["reply"]]["request"]["messages"][-1]["content"][0]
        assert part["type"] == "video_url"
        # The simulator decoded a video with a sound track of about the utterance's length.
        assert "and saw you" in saved[sent["reply"]]["content"]
        assert file["duration"] >= made.segments[0].seconds * 0.9
        page.click("[data-testid=call-end]")
        tracks = page.evaluate(
            "() => window.playgroundCall.lastTracks.map(t => [t.kind, t.readyState])"
        )
        assert sorted(kind for kind, _ in tracks) == ["audio", "video"]
        assert all(ready == "ended" for _, ready in tracks)


def test_an_upstream_error_is_said_in_the_panel(chromium, app_server, tmp_path):
    made = make_speech_wav(
        tmp_path / "error.wav", [("silence", 2.0), ("speech", FIRST), ("silence", 30)]
    )
    with browser_hearing(chromium, made.path) as context:
        page, _ = conversation_page(
            context, app_server, "unlucky-caller", {"system_prompt": "[sim:status=500]"}
        )
        page.click("[data-testid=call]")
        wait_for_log(page, "sent")
        error = page.wait_for_selector("[data-testid=call-error]:not([hidden])")
        assert error.text_content().startswith("The model could not answer")
        assert state(page) == "listening"  # the call goes on
        # A reload ends the call; what was said is in the conversation.
        page.reload()
        assert not page.is_visible("[data-testid=call-panel]") and page.is_visible("#composer")
        assert page.locator("[data-role=user] audio").count() == 1
        assert page.locator("[data-role=assistant][data-status=error]").count() == 1


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_call_panel_has_no_serious_accessibility_violations(
    chromium, app_server, tmp_path, layout, scheme
):
    made = make_speech_wav(
        tmp_path / "axe.wav", [("silence", 2.0), ("speech", FIRST), ("silence", 30)]
    )
    look = {"viewport": LAYOUTS[layout], "color_scheme": scheme}
    with browser_hearing(chromium, made.path, **look) as context:
        page, _ = conversation_page(context, app_server, f"axe-{layout}-{scheme}")
        page.click("[data-testid=call]")
        wait_for_log(page, "ready")
        found = axe_violations(page, f"call listening {layout}-{scheme}")
        page.click("[data-testid=call-camera]")
        wait_for_log(page, "audio-first")
        found += axe_violations(page, f"call speaking, camera on {layout}-{scheme}")
        screenshot(page, f"call-{layout}-{scheme}")
    assert not found, "\n".join(found)


def test_without_a_microphone_the_panel_says_what_to_do(new_context, app_server):
    context = new_context()  # no fake devices, no permission
    app_server.create_user("deaf")
    page = context.new_page()
    log_in(page, app_server, "deaf")
    page.goto(app_server.url + "/new/")
    page.fill("#composer textarea", "Hello")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=call]")
    page.click("[data-testid=call]")
    error = page.wait_for_selector("[data-testid=call-error]:not([hidden])")
    assert "press Call again" in error.text_content()
    page.click("[data-testid=call-end]")
    assert page.is_visible("#composer")
