"""static/chat/wav.js, the WAV encoder of a call's utterances, run under Node: what it writes
is a 16-bit mono PCM WAV that Python's wave module and PyAV read back sample for sample."""

import io
import json
import shutil
import subprocess
import wave
from pathlib import Path

import av
import pytest

NODE = shutil.which("node")
WAV_JS = Path(__file__).resolve().parent.parent / "static" / "chat" / "wav.js"

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")


def encode(parts: list[list[float | str]], rate: int) -> bytes:
    script = (
        f"const {{encodeWav}} = require({json.dumps(str(WAV_JS))});"
        "const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const parts = input.map((p) => Float32Array.from(p, Number));"
        "const samples = parts.length === 1 ? parts[0] : parts;"
        f"process.stdout.write(Buffer.from(encodeWav(samples, {rate})));"
    )
    done = subprocess.run(
        [NODE, "-e", script],
        input=json.dumps(parts).encode(),
        capture_output=True,
        check=True,
        timeout=30,
    )
    return done.stdout


def test_samples_become_16_bit_mono_pcm_at_the_rate_given():
    samples = [0.0, 0.5, -0.5, 1.0, -1.0, 0.25]
    data = encode([samples], 16000)
    with wave.open(io.BytesIO(data)) as wav:
        params = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes())
        frames = wav.readframes(wav.getnframes())
    assert params == (1, 2, 16000, 6)
    values = [int.from_bytes(frames[i : i + 2], "little", signed=True) for i in range(0, 12, 2)]
    assert values == [0, 16384, -16384, 32767, -32768, 8192]
    assert len(data) == 44 + 12


def test_out_of_range_samples_are_clipped_and_missing_ones_are_silence():
    data = encode([[2.0, -3.0, "NaN"]], 16000)
    frames = data[44:]
    values = [int.from_bytes(frames[i : i + 2], "little", signed=True) for i in range(0, 6, 2)]
    assert values == [32767, -32768, 0]


def test_frames_are_joined_in_order_and_pyav_reads_the_right_duration():
    data = encode([[0.25] * 16000, [0.5] * 8000], 16000)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.rate) == ("pcm_s16le", 16000)
        decoded = sum(frame.samples for frame in container.decode(stream))
    assert decoded == 24000  # 1.5 s
    seam = data[44 + 2 * 15999 : 44 + 2 * 16001]
    assert seam == (8192).to_bytes(2, "little") + (16384).to_bytes(2, "little")
