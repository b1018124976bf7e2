"""Messages form a tree: a regenerated reply or an edited message is a sibling of the one it
replaces. The transcript shows one path through the tree, ending at the conversation's
`current` message. Pure functions over a conversation's messages (one query loads them all)."""

from dataclasses import dataclass

from .models import Message


@dataclass(frozen=True)
class Branch:
    """Where a message stands among its siblings: `index` of `total` (1-based)."""

    index: int
    total: int
    previous: int | None
    next: int | None


def children_of(messages: list[Message]) -> dict[int | None, list[Message]]:
    children: dict[int | None, list[Message]] = {}
    for message in sorted(messages, key=lambda m: m.pk):
        children.setdefault(message.parent_id, []).append(message)
    return children


def newest_leaf(messages: list[Message], start: Message) -> Message:
    """Follow the newest child from `start` down to a leaf: where a switched-to branch ends."""
    children = children_of(messages)
    while children.get(start.pk):
        start = children[start.pk][-1]
    return start


def path_to(messages: list[Message], last: Message | None) -> list[Message]:
    """The path from the first message to `last`, oldest first."""
    by_id = {m.pk: m for m in messages}
    path = []
    while last is not None:
        path.append(last)
        last = by_id.get(last.parent_id)
    return path[::-1]


def current_leaf(messages: list[Message], current_id: int | None) -> Message | None:
    """The message the shown path ends at: the stored one, else the newest."""
    by_id = {m.pk: m for m in messages}
    if current_id in by_id:
        return by_id[current_id]
    return max(messages, key=lambda m: m.pk) if messages else None


def shown_path(messages: list[Message], current_id: int | None) -> list[Message]:
    """The branch the chat page shows: the path to the current message, oldest first."""
    return path_to(messages, current_leaf(messages, current_id))


def branches(messages: list[Message]) -> dict[int, Branch]:
    """Sibling positions for every message that has siblings."""
    found: dict[int, Branch] = {}
    for siblings in children_of(messages).values():
        if len(siblings) < 2:
            continue
        for i, message in enumerate(siblings):
            found[message.pk] = Branch(
                index=i + 1,
                total=len(siblings),
                previous=siblings[i - 1].pk if i > 0 else None,
                next=siblings[i + 1].pk if i + 1 < len(siblings) else None,
            )
    return found


def subtree(messages: list[Message], root: Message) -> list[Message]:
    children = children_of(messages)
    found, stack = [], [root]
    while stack:
        message = stack.pop()
        found.append(message)
        stack.extend(children.get(message.pk, []))
    return found
