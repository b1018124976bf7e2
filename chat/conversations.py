"""Finding and keeping conversations: the sidebar's date groups and search with snippets."""

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.translation import pgettext_lazy

from .models import Conversation, Message

SNIPPET_RADIUS = 60


# The groups by name (what code compares), and the heading the sidebar shows for each, in the
# page's language.
GROUP_LABELS = {
    "Pinned": pgettext_lazy("sidebar group", "Pinned"),
    "Today": pgettext_lazy("sidebar group", "Today"),
    "Yesterday": pgettext_lazy("sidebar group", "Yesterday"),
    "Previous 7 days": pgettext_lazy("sidebar group", "Previous 7 days"),
    "Older": pgettext_lazy("sidebar group", "Older"),
}


@dataclass
class Group:
    name: str
    conversations: list = field(default_factory=list)

    @property
    def label(self) -> str:
        """The heading shown, translated when the sidebar is rendered."""
        return str(GROUP_LABELS.get(self.name, self.name))


def group_by_date(conversations: list[Conversation], today: date) -> list[Group]:
    """Pinned first, then Today, Yesterday, Previous 7 days, Older (by last activity). Pure."""
    groups = {name: Group(name) for name in GROUP_LABELS}
    for conversation in conversations:
        day = conversation.updated_at.date()
        if conversation.pinned:
            name = "Pinned"
        elif day >= today:
            name = "Today"
        elif day == today - timedelta(days=1):
            name = "Yesterday"
        elif day > today - timedelta(days=8):
            name = "Previous 7 days"
        else:
            name = "Older"
        groups[name].conversations.append(conversation)
    return [g for g in groups.values() if g.conversations]


def snippet(text: str, query: str) -> tuple[str, str, str]:
    """(before, match, after) around the first match, cut at word edges. Pure."""
    at = text.lower().find(query.lower())
    if at < 0:
        return text[: SNIPPET_RADIUS * 2], "", ""
    start = max(0, at - SNIPPET_RADIUS)
    end = min(len(text), at + len(query) + SNIPPET_RADIUS)
    before = text[start:at]
    if start > 0:
        before = "…" + before.split(" ", 1)[-1]
    after = text[at + len(query) : end]
    if end < len(text):
        after = after.rsplit(" ", 1)[0] + "…"
    return _squeeze(before), text[at : at + len(query)], _squeeze(after)


def _squeeze(text: str) -> str:
    """Runs of whitespace become one space; one at either edge stays, as it parts the snippet
    from the match ("brown fox jumps", not "brownfoxjumps")."""
    return re.sub(r"\s+", " ", text)


@dataclass
class Hit:
    conversation: Conversation
    parts: tuple[str, str, str]


def search(user, query: str, limit: int = 50) -> list[Hit]:
    """Conversations whose title or message text contains `query`, newest first, each with the
    matching snippet."""
    query = query.strip()
    if not query:
        return []
    # The first matching message comes along in the same query: one query per search, which
    # runs as the person types.
    first_match = Message.objects.filter(
        conversation=OuterRef("pk"), content__icontains=query
    ).values("content")[:1]
    matches = (
        Conversation.objects.filter(owner=user)
        .filter(Q(title__icontains=query) | Q(messages__content__icontains=query))
        .annotate(match=Subquery(first_match))
        .distinct()
        .order_by("-updated_at")[:limit]
    )
    hits = []
    for conversation in matches:
        in_title = query.lower() in conversation.title.lower()
        text = conversation.title if in_title else conversation.match or ""
        hits.append(Hit(conversation, snippet(text, query)))
    return hits


def sidebar(user, size: int) -> list[Group]:
    """The sidebar: the owner's `size` most recent conversations, grouped by date."""
    conversations = Conversation.objects.filter(owner=user).only(
        "id", "title", "updated_at", "pinned"
    )[:size]
    return group_by_date(list(conversations), timezone.localdate())
