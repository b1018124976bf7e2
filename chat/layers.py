"""The channel layers: in memory when there is no Redis (one process), Redis pub/sub when there
is (several processes)."""

import asyncio
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer
from channels_redis import pubsub


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    """Channels' in-memory layer, made cheaper per frame (the relay sends about two thousand
    a second with a hundred streams):

    - its expiry sweep scans every channel and every group member, and channels runs it on each
      send and receive: here it runs at most once a second (expiry is tens of seconds, so no
      page can tell);
    - a group send starts a task per member and waits for them all, though a send to memory
      never waits: here the members are sent to one after another, in the same order;
    - each send deep-copies the message; here each member gets a copy of the dict alone. A
      layer message holds strings, numbers and lists of strings, which no consumer changes in
      place: the copy keeps one consumer's changes to its keys from reaching another.
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

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        assert "__asgi_channel__" not in message
        self.require_valid_channel_name(channel)
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            queue.put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None


class RedisPubSubChannelLayer(pubsub.RedisPubSubChannelLayer):
    """channels-redis's pub/sub layer (several processes), its publishes sent side by side.

    channels-redis holds one lock per Redis server across each publish's round trip, so a
    process published at most one frame per turn of its event loop: about 1,100 a second on a
    busy 2-core machine, fewer than 100 streams need, and a process running that many jobs
    queued frames for up to a quarter of a second (README "Performance"). redis-py's connection
    pool lets publishes run at once, each on a connection of its own. A job still sends its own
    frames one after another, each after the last has reached Redis, so they arrive in order.
    """

    def _get_layer(self):
        layer = super()._get_layer()
        if not all(isinstance(shard, _SideBySideShard) for shard in layer._shards):
            # Shards connect on first use: the layer was just made, nothing is connected yet.
            layer._shards = [_SideBySideShard(shard.host, layer) for shard in layer._shards]
        return layer


class _SideBySideShard(pubsub.RedisSingleShardConnection):
    def __init__(self, host: dict, channel_layer) -> None:
        super().__init__(host, channel_layer)
        # As many publishes in flight as the connection pool can lend at once, less the
        # subscriber's connection and one spare: past its limit (redis-py's default is 100)
        # redis-py refuses a command outright ("Too many connections") instead of waiting.
        self.publishes_at_once = max(1, int(host.get("max_connections") or 100) - 2)
        self._publishing = asyncio.Semaphore(self.publishes_at_once)

    async def publish(self, channel: str, message: bytes) -> None:
        async with self._publishing:
            self._ensure_redis()  # no await inside: nothing else runs on this loop meanwhile
            await self._redis.publish(channel, message)
