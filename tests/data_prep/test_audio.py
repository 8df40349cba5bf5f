"""Audio loading (any format/rate -> 16 kHz mono) and the two feature backends, through the real engines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from moda_train.core.rates import SAMPLES_PER_FRAME
from moda_train.perception.audio import HUBERT_PATH_ENV, get_audio_extractor, load_audio
from moda_train.perception.video_io import write_video

RATE = 16000


def tone(seconds: float, freq: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(wave: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)])


def test_load_audio_resamples_44k_stereo(tmp_path):
    # 44.1 kHz stereo int16: a 440 Hz tone on the left, a 1 kHz tone at half level on the right.
    left, right = tone(1.5, 440, 44100), 0.5 * tone(1.5, 1000, 44100)
    path = tmp_path / "stereo.wav"
    wavfile.write(path, 44100, (np.stack([left, right], 1) * 32767).astype(np.int16))
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 1.5 * RATE) <= 2
    assert dominant_frequency(wave) == pytest.approx(440, abs=2)
    spectrum = np.abs(np.fft.rfft(wave))
    freqs = np.fft.rfftfreq(len(wave), 1 / RATE)
    assert spectrum[np.abs(freqs - 1000) < 3].max() > 0.2 * spectrum.max()  # both channels mixed in


def test_load_audio_from_mp4_track(tmp_path):
    wave = tone(2.0, 300)
    frames = np.zeros((50, 64, 64, 3), dtype=np.uint8)
    path = write_video(tmp_path / "talk.mp4", frames, fps=25, audio=wave)
    loaded = load_audio(path)
    assert abs(len(loaded) - len(wave)) <= 2  # AAC priming samples are trimmed by ffmpeg
    n = min(len(loaded), len(wave))
    assert np.corrcoef(loaded[:n], wave[:n])[0, 1] > 0.95


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.wav.*empty"):
        load_audio(empty)
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all\n" * 50)
    with pytest.raises(ValueError, match=r"cannot read audio from .*notes\.mp3"):
        load_audio(text)
    silent_video = write_video(tmp_path / "silent.mp4", np.zeros((10, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"silent\.mp4: it has no audio stream"):
        load_audio(silent_video)


@pytest.mark.parametrize("num_frames,samples", [(1, 100), (7, 7 * 640), (80, 80 * 640 + 333), (251, 100_000)])
def test_logmel_shape_for_any_length(num_frames, samples):
    extractor = get_audio_extractor("logmel")
    features = extractor.extract(np.random.default_rng(0).normal(size=samples).astype(np.float32), num_frames)
    assert features.shape == (num_frames, 4, 80) == (num_frames, *extractor.frame_shape)
    assert features.dtype == np.float16 and np.isfinite(features.astype(np.float32)).all()


def test_logmel_is_aligned_to_video_frames():
    # A burst of tone inside video frame 5 only: the loudest feature frame must be 5, and frames two away silent.
    wave = np.zeros(12 * SAMPLES_PER_FRAME, dtype=np.float32)
    start = 5 * SAMPLES_PER_FRAME
    wave[start : start + SAMPLES_PER_FRAME] = tone(SAMPLES_PER_FRAME / RATE, 1000)
    features = get_audio_extractor("logmel").extract(wave, 12).astype(np.float32)
    energy = features.max(axis=(1, 2))
    assert int(np.argmax(energy)) == 5
    floor = features.min()
    assert np.allclose(features[:3], floor) and np.allclose(features[8:], floor)
    # Within frame 5 the four 10 ms mel frames all see the tone (the window never straddles two frames by much).
    assert (features[5].max(axis=1) > floor + 10).all()


def test_logmel_silence_and_tone_differ_where_expected():
    extractor = get_audio_extractor("logmel")
    silence = extractor.extract(np.zeros(RATE, dtype=np.float32), 25).astype(np.float32)
    assert np.ptp(silence) == 0  # nothing but the log floor
    low = extractor.extract(tone(1.0, 300), 25).astype(np.float32).mean(axis=(0, 1))
    high = extractor.extract(tone(1.0, 3000), 25).astype(np.float32).mean(axis=(0, 1))
    assert np.argmax(low) < np.argmax(high)  # the mel axis runs up in frequency
    assert (low - silence.mean()).max() > 20


def test_unknown_backend_and_options_are_clear():
    with pytest.raises(ValueError, match="unknown audio backend 'mfcc'.*logmel, hubert"):
        get_audio_extractor("mfcc")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bins'\] for the 'logmel'"):
        get_audio_extractor("logmel", bins=40)


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory):
    """A randomly initialised two-layer HuBERT saved the way real checkpoints are (save_pretrained)."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    config = transformers.HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    path = tmp_path_factory.mktemp("hubert_tiny")
    transformers.HubertModel(config).save_pretrained(path)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(path)
    return path


def test_hubert_loads_a_local_checkpoint(tiny_hubert):
    extractor = get_audio_extractor("hubert", path=str(tiny_hubert))
    assert extractor.frame_shape == (2, 32)
    assert extractor.name == "hubert" and "hubert" in extractor.version
    speech = tone(2.0, 200) * np.sin(np.linspace(0, 12 * np.pi, 2 * RATE)).astype(np.float32)
    for num_frames in (1, 50, 63):
        features = extractor.extract(speech, num_frames)
        assert features.shape == (num_frames, 2, 32) and features.dtype == np.float16
    first, again = extractor.extract(speech, 50), extractor.extract(speech, 50)
    np.testing.assert_array_equal(first, again)
    other = extractor.extract(np.random.default_rng(1).normal(size=2 * RATE).astype(np.float32), 50)
    assert np.abs(first.astype(np.float32) - other.astype(np.float32)).mean() > 1e-3


def test_hubert_resamples_encoder_frames_linearly(tiny_hubert):
    import torch
    from transformers import HubertModel

    extractor = get_audio_extractor("hubert", path=tiny_hubert)
    wave = np.random.default_rng(2).normal(size=50 * SAMPLES_PER_FRAME).astype(np.float32)
    features = extractor.extract(wave, 50).astype(np.float32)
    model = HubertModel.from_pretrained(tiny_hubert).eval()
    normalised = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    with torch.no_grad():
        hidden = model(torch.from_numpy(normalised)[None], output_hidden_states=True).hidden_states
    last = hidden[-1][0].numpy()  # [S, D] at 50 Hz
    # align_corners: video frame t sits at encoder position t * (S - 1) / (T - 1); the ends coincide exactly.
    np.testing.assert_allclose(features[0, -1], last[0], atol=2e-2, rtol=2e-2)
    np.testing.assert_allclose(features[-1, -1], last[-1], atol=2e-2, rtol=2e-2)


def test_hubert_from_environment_variable(tiny_hubert, monkeypatch):
    monkeypatch.setenv(HUBERT_PATH_ENV, str(tiny_hubert))
    assert get_audio_extractor("hubert").frame_shape == (2, 32)


def test_hubert_missing_weights_name_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv(HUBERT_PATH_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=HUBERT_PATH_ENV):
        get_audio_extractor("hubert")
    missing = tmp_path / "no_such_checkpoint"
    with pytest.raises(FileNotFoundError, match=f"HuBERT weights not found at {missing}"):
        get_audio_extractor("hubert", path=missing)
