"""Spoken answers: the API streams raw PCM (24 kHz, signed 16-bit little-endian, mono, no header,
even when WAV was asked for); we keep it and write a real WAV file when the reply ends."""

import struct

SAMPLE_RATE = 24_000
SAMPLE_WIDTH = 2  # bytes, s16le
CHANNELS = 1


def wav_header(pcm_length: int, rate: int = SAMPLE_RATE) -> bytes:
    """A 44-byte RIFF/WAVE header for `pcm_length` bytes of s16le mono PCM. Pure."""
    byte_rate = rate * SAMPLE_WIDTH * CHANNELS
    return (
        b"RIFF"
        + struct.pack("<I", 36 + pcm_length)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, CHANNELS, rate, byte_rate, SAMPLE_WIDTH * CHANNELS, 16)
        + b"data"
        + struct.pack("<I", pcm_length)
    )


def pcm_to_wav(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    """PCM chunks joined in any sizes -> a WAV file. A dangling odd byte (half a sample) is
    dropped: chunks may split a sample, the whole stream never should. Pure."""
    usable = len(pcm) - len(pcm) % (SAMPLE_WIDTH * CHANNELS)
    return wav_header(usable, rate) + pcm[:usable]


def duration(pcm_length: int, rate: int = SAMPLE_RATE) -> float:
    return pcm_length / (rate * SAMPLE_WIDTH * CHANNELS)
