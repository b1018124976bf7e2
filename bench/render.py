"""Server time and query count to render a conversation of 1,000 messages (500 turns), each
reply saved as streaming leaves it (timings, usage, cost, the request body with its history).

Run by hand: `.venv/bin/python bench/render.py`. Uses a temporary SQLite data dir, Django's
test client in-process (no network), and renders the page several times; prints a table.
"""

import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="playground.settings",
            PLAYGROUND_DATA_DIR=data_dir,
            PLAYGROUND_MANIFEST_STATIC="false",
            DJANGO_ALLOWED_HOSTS="testserver",
        )
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext
        from django.utils import timezone

        from chat.models import Conversation, Message
        from chat.rendering import render_markdown

        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create_user("bench")
        conversation = Conversation.objects.create(owner=user, title="Long conversation")
        answer = "Here is **some** Markdown with `code`:\n\n```python\nprint('hi')\n```\n"
        html = render_markdown(answer)
        # Replies as streaming leaves them: timings, usage, cost, and the request body saved
        # for "View code", which carries the whole history sent (so it grows turn by turn).
        started = timezone.now()
        history: list[dict] = []
        parent = None
        for turn in range(500):
            question = Message.objects.create(
                conversation=conversation, parent=parent, role="user", content=f"Question {turn}"
            )
            history.append({"role": "user", "content": question.content})
            parent = Message.objects.create(
                conversation=conversation,
                parent=question,
                role="assistant",
                content=answer,
                html=html,
                status="complete",
                model="qwen3.5-omni-flash",
                request={"model": "qwen3.5-omni-flash", "messages": history, "stream": True},
                usage={"prompt_tokens": 10 + 20 * turn, "completion_tokens": 20},
                cost={"usd_spent": 7.6e-06},
                finish_reason="stop",
                started_at=started,
                first_token_at=started + timedelta(seconds=0.4),
                finished_at=started + timedelta(seconds=3.2),
            )
            history.append({"role": "assistant", "content": answer})
        Conversation.objects.filter(pk=conversation.pk).update(current=parent)
        client = Client()
        client.force_login(user)
        url = f"/c/{conversation.pk}/"
        client.get(url)  # warm caches and the template loader
        times, queries = [], 0
        for _ in range(10):
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - start) * 1000)
            queries = len(captured)
            assert response.status_code == 200
            assert response.content.count(b'data-testid="message"') == 1000
        print("| measure | value | target |")
        print("| --- | ---: | --- |")
        print("| messages rendered | 1000 | |")
        print(f"| server time, median of 10 | {statistics.median(times):.0f} ms | < 200 ms |")
        print(f"| server time, slowest of 10 | {max(times):.0f} ms | |")
        print(f"| queries per page | {queries} | fixed |")
        print(f"| page size | {len(response.content) / 1024:.0f} KiB | |")


if __name__ == "__main__":
    main()
