"""Server time and query count to render a conversation of 1,000 messages (500 turns).

Run by hand: `.venv/bin/python bench/render.py`. Uses a temporary SQLite data dir, Django's
test client in-process (no network), and renders the page several times; prints a table.
"""

import os
import statistics
import sys
import tempfile
import time
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
        from django.test.utils import CaptureQueriesContext, setup_test_environment

        from chat.models import Conversation, Message
        from chat.rendering import render_markdown

        call_command("migrate", verbosity=0)
        setup_test_environment()
        user = get_user_model().objects.create_user("bench")
        conversation = Conversation.objects.create(owner=user, title="Long conversation")
        answer = "Here is **some** Markdown with `code`:\n\n```python\nprint('hi')\n```\n"
        html = render_markdown(answer)
        parent = None
        for turn in range(500):
            question = Message.objects.create(
                conversation=conversation, parent=parent, role="user", content=f"Question {turn}"
            )
            parent = Message.objects.create(
                conversation=conversation,
                parent=question,
                role="assistant",
                content=answer,
                html=html,
                usage={"prompt_tokens": 10, "completion_tokens": 20},
                cost={"usd_spent": 0.0001},
            )
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
