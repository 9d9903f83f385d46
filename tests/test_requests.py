"""What a served model refuses, and how (tasks/data/requests.py, tasks/serving/pyfunc_model.py rows): one line
naming the problem, and bounded cost whatever the request holds."""

import base64
import io
import resource
import time

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from PIL import Image

from tasks.data.datasets import resample
from tasks.data.requests import BadRequest, each_row, numbers, open_image, read_audio, text
from tasks.schema import ServingLimits
from tasks.serving.pyfunc_model import rows

LIMITS = ServingLimits().model_dump()


def encoded(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def wav(seconds: float, rate: int) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("request_input", "reason"),
    [
        (pd.DataFrame({"image": []}), "the request holds no rows"),
        (pd.DataFrame({"picture": ["x"]}), "the request has no 'image' field (it has ['picture'])"),
        ({"pixels": [1]}, "the request has no 'image' field"),
        (pd.DataFrame({"image": ["x"] * 65}), "holds 65 rows, over the limit of 64 (global.serving.max_rows)"),
    ],
)
def test_requests_without_rows_with_a_wrong_field_or_too_many_rows_are_refused(request_input, reason):
    with pytest.raises(BadRequest, match=reason.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        rows(request_input, "image", LIMITS)


def test_the_inputs_form_and_plain_values_are_rows():
    assert rows(pd.DataFrame({0: ["a", "b"]}), "text", LIMITS) == ["a", "b"]  # {"inputs": [...]}
    assert rows("a", "text", LIMITS) == ["a"] and rows({"text": "a"}, "text", LIMITS) == ["a"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not base64!", "is not base64"),
        (encoded(b"GIF89a but not really"), "not a PNG or JPEG image"),
        (encoded(png(5000, 4000)), "20000000 pixels, over the limit of 16777216"),
        ([[1.0, float("nan")], [0.0, 1.0]], "not finite numbers"),
        ([["a", "b"]], "an array of numbers"),
        ([[1, 2], [3]], "an array of numbers"),
        (7, "an image array must be H x W"),
        ([], "is empty"),
    ],
)
def test_images_that_cannot_be_read_are_refused_with_the_reason(value, reason):
    with pytest.raises(BadRequest, match=reason):
        open_image(value, LIMITS)


def test_a_readable_image_opens():
    assert open_image(encoded(png(20, 10)), LIMITS).size == (20, 10)
    assert open_image(np.zeros((8, 9, 1)).tolist(), LIMITS).size == (9, 8)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("%%%", "is not base64"),
        (encoded(b"RIFF....WAVEfmt nothing"), "not a WAV, FLAC or MP3 file"),
        (encoded(wav(61, 8000)), "61.0 s long, over the limit of 60.0 s"),
        (np.zeros(16000 * 61).tolist(), "61.0 s long, over the limit of 60.0 s"),
        ([0.0, float("inf")], "not finite numbers"),
    ],
)
def test_audio_that_cannot_be_read_is_refused_with_the_reason(value, reason):
    with pytest.raises(BadRequest, match=reason):
        read_audio(value, 16000, LIMITS)


def test_audio_at_a_rate_sharing_no_divisor_with_the_models_is_resampled_promptly_in_little_memory():
    """44101 Hz to 16 kHz exactly would need a filter bank of 16000 phases x 44101 taps (gigabytes)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    waveform = read_audio(encoded(wav(2.0, 44101)), 16000, LIMITS)
    assert time.perf_counter() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500 * 1024  # kB: under 500 MB more
    assert abs(len(waveform) - 32000) <= 2  # 2 s at 16 kHz (within the 44100-for-44101 rounding)
    spectrum = np.abs(np.fft.rfft(waveform.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / len(waveform) - 440) < 2  # the tone kept its pitch


def test_standard_rates_are_resampled_exactly():
    tone = torch.sin(2 * torch.pi * 440 * torch.arange(44100) / 44100)
    assert len(resample(tone, 44100, 16000)) == 16000 and len(resample(tone[:22050], 22050, 16000)) == 16000


def test_texts_must_be_strings_within_the_size_limit():
    for value, reason in [(3, "must be a string, not int"), ("  ", "is empty"), ("x" * (17 * 2**20), "over the limit")]:
        with pytest.raises(BadRequest, match=reason):
            text(value, LIMITS)


def test_a_refused_row_is_named():
    with pytest.raises(BadRequest, match=r"^row 1: the array is empty$"):
        each_row([[1.0], []], lambda value: numbers(value, LIMITS, "the array"))
