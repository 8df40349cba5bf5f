"""Speech in, per-video-frame audio features out.

`load_audio` decodes any file ffmpeg can read (wav, mp3, m4a, the audio track of an mp4, ...) to float32 mono at
16 kHz with the ffmpeg binary that imageio-ffmpeg ships, so no system ffmpeg is needed.

Two feature backends share one interface, `.extract(wave, num_frames) -> float16 [num_frames, L, D]`:

- `logmel` (no weights): 80 log-mel bins, 25 ms Hann window, 10 ms hop, so 4 mel frames per 40 ms video frame
  (L=4, D=80). Mel frame k of video frame t is centred on the middle of the k-th 10 ms quarter of that frame.
- `hubert`: HuBERT / wav2vec2 through `transformers` from a local checkpoint folder; every transformer layer's
  hidden state is kept (L = number of layers, 12 for base) and linearly resampled from the encoder's 50 Hz to
  25 fps, as MoDA does (L=12, D=768 for base).

The wave is zero-padded or trimmed to exactly `num_frames * 640` samples first, so features and video frames
always line up one to one. torch is imported inside the extractors: `load_audio` alone (the demo corpus, the
shard pipeline's decoding) then does not pay torch's import time in every worker process.
"""

from __future__ import annotations

import os
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from moda_train.core.rates import SAMPLE_RATE, SAMPLES_PER_FRAME
from moda_train.core.weights import WEIGHTS, find_weights
from moda_train.perception.registry import build_backend

HUBERT_PATH_ENV = WEIGHTS["hubert"].env_var


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of `path` to float32 mono at `sample_rate` Hz, shape [N].

    Raises FileNotFoundError for a missing path and ValueError (naming the file and ffmpeg's reason) for a file
    without a decodable audio stream.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"cannot read audio from {path}: the file is empty (0 bytes)")
    cmd = [_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-vn"]
    cmd += ["-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        message = stderr.splitlines()[-1] if stderr else f"ffmpeg exited with code {proc.returncode}"
        if "matches no streams" in stderr:
            message = "it has no audio stream"
        raise ValueError(f"cannot read audio from {path}: {message}")
    wave = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if wave.size == 0:
        raise ValueError(f"cannot read audio from {path}: the audio stream decoded to zero samples")
    return wave


def fit_to_frames(wave: np.ndarray, num_frames: int) -> np.ndarray:
    """Zero-pad or trim a 16 kHz mono wave to exactly `num_frames` video frames (640 samples each)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono wave of shape [N], got shape {wave.shape}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    target = num_frames * SAMPLES_PER_FRAME
    if wave.size >= target:
        return wave[:target]
    return np.pad(wave, (0, target - wave.size))


class AudioExtractor(ABC):
    """Per-video-frame audio features from a 16 kHz mono wave."""

    name: str
    version: str

    @property
    @abstractmethod
    def frame_shape(self) -> tuple[int, int]:
        """(L, D): feature rows per video frame and their width."""

    @abstractmethod
    def extract(self, wave: np.ndarray, num_frames: int) -> np.ndarray:
        """Features of `wave` (float32 [N], 16 kHz) for `num_frames` video frames: float16 [num_frames, L, D]."""


def mel_filterbank(num_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0, fmax: float | None = None):
    """Triangular HTK-mel filters, float32 [num_mels, n_fft // 2 + 1], each normalised to unit area (Slaney)."""
    fmax = sample_rate / 2 if fmax is None else fmax

    def hz_to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def mel_to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), num_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower = (bins[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - bins[None, :]) / (edges[2:, None] - edges[1:-1, None])
    filters = np.maximum(0.0, np.minimum(lower, upper))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return filters.astype(np.float32)


class LogMelExtractor(AudioExtractor):
    """80 log-mel bins, 25 ms window, 10 ms hop: [num_frames, 4, 80]. Needs no weights."""

    name = "logmel"

    def __init__(self, num_mels: int = 80, window_ms: float = 25.0, hop_ms: float = 10.0) -> None:
        self.window = int(round(SAMPLE_RATE * window_ms / 1000))
        self.hop = int(round(SAMPLE_RATE * hop_ms / 1000))
        if SAMPLES_PER_FRAME % self.hop:
            raise ValueError(f"hop_ms={hop_ms} must divide the 40 ms video frame into whole mel frames")
        self.num_mels = num_mels
        self.per_frame = SAMPLES_PER_FRAME // self.hop
        self.filters = mel_filterbank(num_mels, self.window, SAMPLE_RATE)
        self.version = f"1:{num_mels}mel-{window_ms:g}ms-{hop_ms:g}ms-log"

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (self.per_frame, self.num_mels)

    def extract(self, wave: np.ndarray, num_frames: int) -> np.ndarray:
        import torch

        wave = torch.from_numpy(fit_to_frames(wave, num_frames))
        # Centre mel frame j on sample hop*j + hop/2 (the middle of its 10 ms slot): pad so that the window of
        # frame j starts at hop*j + hop/2 - window/2, and take exactly per_frame * num_frames windows.
        left = self.window // 2 - self.hop // 2
        right = self.window - self.hop - left
        padded = torch.nn.functional.pad(wave, (left, right))
        spec = torch.stft(
            padded,
            n_fft=self.window,
            hop_length=self.hop,
            window=torch.hann_window(self.window),
            center=False,
            return_complex=True,
        )  # [F, per_frame * num_frames]
        power = spec.abs() ** 2
        mel = torch.from_numpy(self.filters) @ power  # [num_mels, frames]
        logmel = torch.log(mel.clamp_min(1e-10))
        return logmel.T.reshape(num_frames, self.per_frame, self.num_mels).numpy().astype(np.float16)


class HubertExtractor(AudioExtractor):
    """All hidden layers of a local HuBERT / wav2vec2 checkpoint, resampled to 25 fps: [num_frames, L, D]."""

    name = "hubert"

    def __init__(self, path: str | os.PathLike | None = None, device: str = "cpu") -> None:
        path = find_weights("hubert", path, "the hubert backend's `path` option")
        try:
            from transformers import AutoModel, Wav2Vec2FeatureExtractor
        except ImportError as err:
            raise ImportError(
                "the hubert audio backend needs transformers: pip install 'moda-train[hubert]'"
            ) from err
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        # Checkpoints carry their input normalisation in preprocessor_config.json; without one, use the
        # wav2vec2/HuBERT default (zero mean, unit variance per utterance).
        if (path / "preprocessor_config.json").is_file():
            self.processor = Wav2Vec2FeatureExtractor.from_pretrained(path, local_files_only=True)
        else:
            self.processor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
        self.device = device
        config = self.model.config
        self._frame_shape = (int(config.num_hidden_layers), int(config.hidden_size))
        self.version = f"{config.model_type}:{path.name}:{self._frame_shape[0]}x{self._frame_shape[1]}"

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self._frame_shape

    def extract(self, wave: np.ndarray, num_frames: int) -> np.ndarray:
        import torch

        wave = fit_to_frames(wave, num_frames)
        inputs = self.processor(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_values
        with torch.inference_mode():
            out = self.model(inputs.to(self.device), output_hidden_states=True)
        # hidden_states[0] is the CNN feature projection before the transformer; MoDA stacks the 12 layer outputs.
        layers = torch.stack(out.hidden_states[1:], dim=1)[0]  # [L, S, D] at the encoder rate (50 Hz)
        layers = layers.permute(0, 2, 1)  # [L, D, S]
        resampled = torch.nn.functional.interpolate(layers, size=num_frames, mode="linear", align_corners=True)
        return resampled.permute(2, 0, 1).float().cpu().numpy().astype(np.float16)  # [T, L, D]


AUDIO_EXTRACTORS: dict[str, type[AudioExtractor]] = {"logmel": LogMelExtractor, "hubert": HubertExtractor}


def get_audio_extractor(name: str, **options: Any) -> AudioExtractor:
    """Build an audio feature backend by name (`logmel`, `hubert`); options go to its constructor."""
    return build_backend("audio", AUDIO_EXTRACTORS, name, options)
