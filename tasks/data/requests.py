"""What a served model accepts, and what it refuses with one line: the raw request values of every kind decoded
within limits (``global.serving`` in params.yaml, recorded in the served model's config).

A value that cannot be decoded (not base64, not an image or an audio file, not an array of finite numbers) or that
is over a limit raises ``BadRequest``; the served wrapper (tasks/serving/pyfunc_model.py) turns it into MLflow's
INVALID_PARAMETER_VALUE, which its scoring server answers with HTTP 400 and the message, never a stack trace. The
limits bound what one request can cost: rows, bytes per value, decoded pixels (checked from the image header, before
decoding), seconds of audio (from the file header); resampling is bounded too (``tasks.data.datasets.resample``).
"""

import base64
import binascii
import io

import numpy as np


class BadRequest(ValueError):
    """A request value the model cannot take; the message says why, in one line, for the client."""


def limits_from(config: dict | None) -> dict:
    """The serving limits a served model was logged with (the defaults of params.yaml for older models)."""
    from tasks.schema import ServingLimits

    return ServingLimits(**((config or {}).get("limits") or {})).model_dump()


def check_size(value, limits: dict) -> None:
    """A string value (base64, text) within max_input_mb."""
    if isinstance(value, (str, bytes)) and len(value) > limits["max_input_mb"] * 2**20:
        raise BadRequest(
            f"the value is {len(value) / 2**20:.1f} MB, over the limit of {limits['max_input_mb']} MB"
            " (global.serving.max_input_mb)"
        )


def decode_base64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"a string must be a base64-encoded {what}, and this one is not base64") from None


def numbers(value, limits: dict, what: str) -> np.ndarray:
    """An array of finite numbers (float32), at most max_input_mb of them in float32."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadRequest(
            f"{what} must be a base64 string or an array of numbers (a nested list of equal lengths)"
        ) from None
    if array.size == 0:
        raise BadRequest(f"{what} is empty")
    if array.nbytes > limits["max_input_mb"] * 2**20:
        raise BadRequest(f"{what} has {array.size} values, over the limit of {limits['max_input_mb']} MB of float32")
    if not np.isfinite(array).all():
        raise BadRequest(f"{what} holds values that are not finite numbers (NaN or infinity)")
    return array


def open_image(value, limits: dict):
    """A PIL image from a base64 PNG/JPEG or an H x W [x C] array of 0..255 values, within max_image_pixels."""
    from PIL import Image, UnidentifiedImageError

    check_size(value, limits)
    if isinstance(value, str):
        try:
            image = Image.open(io.BytesIO(decode_base64(value, "PNG or JPEG image")))
        except (UnidentifiedImageError, OSError):
            raise BadRequest("the decoded bytes are not a PNG or JPEG image") from None
        pixels = image.width * image.height  # from the header: nothing is decoded yet
    else:
        array = numbers(value, limits, "the image")
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise BadRequest(f"an image array must be H x W, H x W x 1, 3 or 4; got shape {list(array.shape)}")
        pixels = array.shape[0] * array.shape[1]
    if pixels > limits["max_image_pixels"]:
        raise BadRequest(f"the image has {pixels} pixels, over the limit of {limits['max_image_pixels']}"
                         " (global.serving.max_image_pixels)")  # fmt: skip
    if isinstance(value, str):
        try:
            image.load()
        except (OSError, Image.DecompressionBombError) as error:
            raise BadRequest(f"the image cannot be decoded ({str(error).splitlines()[0]})") from None
        return image
    return Image.fromarray(array.clip(0, 255).astype(np.uint8))


def read_audio(value, sample_rate: int, limits: dict):
    """A mono float32 waveform (torch) at sample_rate from a base64 WAV/FLAC/MP3 (resampled) or samples at that rate,
    at most max_audio_seconds long."""
    import soundfile
    import torch

    from tasks.data.datasets import resample

    check_size(value, limits)
    seconds_limit = limits["max_audio_seconds"]
    if not isinstance(value, str):
        samples = numbers(value, limits, "the audio").reshape(-1)
        if len(samples) > seconds_limit * sample_rate:
            raise BadRequest(f"the audio is {len(samples) / sample_rate:.1f} s long, over the limit of {seconds_limit}"
                             " s (global.serving.max_audio_seconds)")  # fmt: skip
        return torch.from_numpy(samples)
    data = io.BytesIO(decode_base64(value, "WAV, FLAC or MP3 file"))
    try:
        info = soundfile.info(data)
        if info.frames > seconds_limit * info.samplerate:
            raise BadRequest(f"the audio is {info.frames / info.samplerate:.1f} s long, over the limit of"
                             f" {seconds_limit} s (global.serving.max_audio_seconds)")  # fmt: skip
        data.seek(0)
        samples, rate = soundfile.read(data, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError:
        raise BadRequest("the decoded bytes are not a WAV, FLAC or MP3 file") from None
    if not np.isfinite(samples).all():
        raise BadRequest("the audio holds values that are not finite numbers")
    return resample(torch.from_numpy(samples.mean(axis=1)), rate, sample_rate)


def text(value, limits: dict, what: str = "the text") -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a string, not {type(value).__name__}")
    check_size(value, limits)
    if not value.strip():
        raise BadRequest(f"{what} is empty")
    return value


def each_row(values: list, decode) -> list:
    """decode(value) for each row of a request; a BadRequest names its row."""
    decoded = []
    for row, value in enumerate(values):
        try:
            decoded.append(decode(value))
        except BadRequest as error:
            raise BadRequest(f"row {row}: {error}") from None
    return decoded
