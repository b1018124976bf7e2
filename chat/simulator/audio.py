"""Speech stand-in: one short tone per word, in the vendor's streamed audio format.

The vendor streams raw PCM (24 kHz, signed 16-bit little-endian, mono, no header) even when
"wav" was asked for, so that is what the simulator sends. Tones are audible on purpose: a player
that silently drops or garbles chunks is then easy to hear.
"""

import functools
import math
import sys
import zlib
from array import array

SAMPLE_RATE = 24_000
BYTES_PER_SAMPLE = 2
AMPLITUDE = 0.25 * 32767
BASE_HZ = 220.0
# Fades stop each tone from clicking at its edges.
FADE_SECONDS = 0.005
GAP_SECONDS = 0.02
PAUSE_SECONDS = 0.06


@functools.lru_cache(maxsize=4096)
def token_pcm(token: str) -> bytes:
    """PCM for one streamed token: a tone whose pitch and length follow the word, then a gap.

    Whitespace-only tokens are a short pause. Deterministic, so tests and replays match.
    """
    word = token.strip()
    if not word:
        return _silence(PAUSE_SECONDS)
    # crc32, not hash(): str hashes change per process and the audio must not.
    semitone = zlib.crc32(word.lower().encode()) % 13
    frequency = BASE_HZ * 2 ** (semitone / 12)
    seconds = min(0.06 + 0.02 * len(word), 0.3)
    count = round(seconds * SAMPLE_RATE)
    fade = round(FADE_SECONDS * SAMPLE_RATE)
    samples = array("h")
    for n in range(count):
        envelope = min(1.0, n / fade, (count - 1 - n) / fade)
        phase = 2 * math.pi * frequency * n / SAMPLE_RATE
        samples.append(round(AMPLITUDE * envelope * math.sin(phase)))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes() + _silence(GAP_SECONDS)


def pcm_seconds(pcm: bytes) -> float:
    return len(pcm) / (SAMPLE_RATE * BYTES_PER_SAMPLE)


def _silence(seconds: float) -> bytes:
    return bytes(round(seconds * SAMPLE_RATE) * BYTES_PER_SAMPLE)
