"""The in-memory channel layer used when there is no Redis (one process)."""

import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    """Channels' in-memory layer, made cheaper per frame (the relay sends about two thousand
    a second with a hundred streams):

    - its expiry sweep scans every channel and every group member, and channels runs it on each
      send and receive: here it runs at most once a second (expiry is tens of seconds, so no
      page can tell);
    - a group send starts a task per member and waits for them all, though a send to memory
      never waits: here the members are sent to one after another, in the same order.
    """

    sweep_interval = 1.0
    _last_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < self.sweep_interval:
            return
        self._last_sweep = now
        super()._clean_expired()

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            try:
                await self.send(channel, message)
            except ChannelFull:
                pass  # as channels does: a full page misses the frame, then resyncs
