from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from chat.generation import interrupt_stale


class Command(BaseCommand):
    help = (
        "Mark replies left 'streaming' by a process that is gone as 'interrupted', keeping "
        "their text. Run at start-up, before the server takes requests."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--lease",
            type=float,
            default=None,
            help="Only rows not checkpointed for this many seconds. Default: with REDIS_URL "
            "(several processes) PLAYGROUND_LEASE_SECONDS, else every streaming row (one "
            "process, just starting).",
        )

    def handle(self, *args, lease: float | None, **options):
        if lease is None and settings.REDIS_URL:
            lease = settings.PLAYGROUND_LEASE_SECONDS
        messages = interrupt_stale(timedelta(seconds=lease) if lease is not None else None)
        if messages:
            self.stdout.write(f"Marked {len(messages)} interrupted reply(ies).")
