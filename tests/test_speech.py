import io
import math
import struct
import wave

from chat.speech import pcm_to_wav


def tone(samples: int) -> bytes:
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / 24000)))
        for n in range(samples)
    )


def test_pcm_chunks_of_odd_sizes_make_a_valid_wav_of_the_right_length():
    pcm = tone(24000)  # one second
    chunks, i = [], 0
    for size in (1, 3, 1000, 7, 4095, 2):
        chunks.append(pcm[i : i + size])
        i += size
    chunks.append(pcm[i:])
    wav_bytes = pcm_to_wav(b"".join(chunks))
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert wav.getframerate() == 24000
        assert wav.getsampwidth() == 2
        assert wav.getnchannels() == 1
        assert wav.getnframes() == 24000
        assert wav.readframes(24000) == pcm


def test_a_dangling_half_sample_is_dropped():
    wav_bytes = pcm_to_wav(tone(10) + b"\x01")
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert wav.getnframes() == 10
    assert len(wav_bytes) == 44 + 20
