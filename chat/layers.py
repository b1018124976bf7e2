"""The in-memory channel layer used when there is no Redis (one process)."""

import time

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    """Channels' in-memory layer with its expiry sweep run at most once a second.

    The sweep scans every channel and every group member, and channels runs it on each send and
    receive: with a hundred streams it was the relay's largest single cost. Expiry is measured
    in tens of seconds, so sweeping once a second changes nothing a page can see.
    """

    sweep_interval = 1.0
    _last_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < self.sweep_interval:
            return
        self._last_sweep = now
        super()._clean_expired()
