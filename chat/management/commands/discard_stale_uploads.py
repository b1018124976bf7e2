from datetime import timedelta

from django.core.management.base import BaseCommand

from chat.attachments import discard_stale_uploads


class Command(BaseCommand):
    help = (
        "Remove uploads that never became part of a message (unfinished, failed, or left "
        "processing by a process that stopped), with their files. Run at start-up."
    )

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=float, default=24, help="Only those older than this.")

    def handle(self, *args, hours: float, **options):
        count = discard_stale_uploads(timedelta(hours=hours))
        if count:
            self.stdout.write(f"Removed {count} stale upload(s).")
