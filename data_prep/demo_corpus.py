"""Build a small talking-head corpus that runs anywhere: a real face, real speech, a mouth that moves with it.

    python -m data_prep.demo_corpus --out demo/videos --num-videos 24 --seconds 5 --seed 0

Each video: scikit-image's astronaut photo (a real face) cropped so the face fills about half of a 320 px frame;
speech from espeak-ng when it is installed (voice, pitch and speed vary by speaker; different sentences per video)
or else a built-in fallback (a vowel-like pulse source through formant filters with a syllable-rate envelope); the
jaw and lower lip lowered in proportion to the speech amplitude envelope through `moda_train.perception.face_warp`
(the same warp as the weight-free renderer); a per-speaker head sway (roll, horizontal and vertical shift of the
whole frame); a per-speaker colour tint and mirroring. Muxed to H.264 + AAC mp4 at 25 fps with 16 kHz audio.

Written next to each `<name>.mp4`: `<name>.envelope.npy` (float32 [T], the speech envelope per video frame in
[0, 1] that drove the mouth) and `<name>.sway.npy` (float32 [T, 3]: roll in degrees, clockwise on screen like
the motion layout's roll; x and y shift in pixels).
`labels.csv` (path relative to the csv, speaker, emotion, split) serves the generic folder layout. The emotions
are acted, one per video of a speaker in turn (`EMOTION_CYCLE`: neutral, happiness, sadness, surprise), by a
constant landmark displacement held for the whole video (`expression_offsets`): happiness raises and widens the
mouth corners, sadness lowers them and raises the inner brows, surprise raises the brows and upper eyelids.
`corpus.json` records how the corpus was made.

Deterministic given the seed; re-running skips videos that are already complete (the mp4 is renamed into place
last, so its presence means the video and its side files are whole).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from moda_train.core.rates import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from moda_train.perception.audio import fit_to_frames, load_audio
from moda_train.perception.face_warp import FaceWarper
from moda_train.perception.video_io import write_video

FRAME_SIZE = 320
PHOTO_CROP = (15, 235, 115, 335)  # top, bottom, left, right of the face region in skimage's 512 px astronaut
# mediapipe FaceMesh inner-lip contours, from the subject's right mouth corner to the left one.
INNER_UPPER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MAX_JAW_DROP = 0.09  # lower-lip travel at full envelope, as a fraction of the face height
EMOTION_CYCLE = ("neutral", "happiness", "sadness", "surprise")  # acted, one per video of a speaker in turn
# FaceMesh landmarks the expressions move: mouth corners, inner and middle brows, upper eyelids (both sides).
MOUTH_CORNERS = (61, 291)
INNER_BROWS = (107, 336)
BROWS = (105, 334, 107, 336, 66, 296)
UPPER_LIDS = (159, 386)
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-rp")
VARIANTS = ("m3", "f2", "m1", "f4", "m7", "f3")
# Harvard sentences (IEEE 1969 recommended practice for speech quality measurements; public domain).
SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
)


@dataclass
class Speaker:
    """Everything that makes one demo speaker recognisable: voice, head sway and look."""

    name: str
    voice: str
    pitch: int
    speed: int
    f0: float  # fallback voice pitch in Hz
    sway_roll: tuple[float, float, float]  # amplitude (degrees), frequency (Hz), phase
    sway_x: tuple[float, float, float]  # amplitude (pixels), frequency, phase
    sway_y: tuple[float, float, float]
    tint: tuple[float, float, float]  # RGB gains
    mirrored: bool


def make_speaker(index: int, seed: int) -> Speaker:
    """Speaker `index` of the corpus built with `seed` (deterministic)."""
    rng = np.random.default_rng([seed, index, 7])

    def sway(amplitude: float) -> tuple[float, float, float]:
        return (
            float(amplitude * rng.uniform(0.6, 1.0)),
            float(rng.uniform(0.15, 0.45)),
            float(rng.uniform(0, 6.28)),
        )

    return Speaker(
        name=f"spk{index:02d}",
        voice=f"{VOICES[index % len(VOICES)]}+{VARIANTS[index % len(VARIANTS)]}",
        pitch=int(rng.integers(25, 75)),
        speed=int(rng.integers(140, 185)),
        f0=float(rng.uniform(95, 220)),
        sway_roll=sway(5.0),
        sway_x=sway(0.025 * FRAME_SIZE),
        sway_y=sway(0.015 * FRAME_SIZE),
        tint=tuple(float(g) for g in rng.uniform(0.85, 1.1, size=3)),
        mirrored=bool(index % 2),
    )


def speak_espeak(text: str, speaker: Speaker, workdir: Path) -> np.ndarray:
    """Speech for `text` from espeak-ng in the speaker's voice, float32 mono at 16 kHz."""
    wav = workdir / "speech.wav"
    cmd = [
        "espeak-ng",
        "-v",
        speaker.voice,
        "-p",
        str(speaker.pitch),
        "-s",
        str(speaker.speed),
        "-w",
        str(wav),
        text,
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return load_audio(wav, SAMPLE_RATE)


# (F1, F2, F3) in Hz of a few English vowels: enough spectral variety for audio features to follow.
_VOWEL_FORMANTS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def speak_fallback(text: str, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """A vowel-like stand-in for speech when espeak-ng is missing: one syllable per vowel letter group of `text`,
    a glottal pulse train at the speaker's pitch through formant resonators, pauses between words."""
    from scipy.signal import lfilter  # imported here: scipy.signal takes seconds to import, espeak runs need none

    pieces = []
    for word in text.split():
        syllables = max(
            1, sum(1 for i, c in enumerate(word) if c in "aeiouy" and (i == 0 or word[i - 1] not in "aeiouy"))
        )
        for _ in range(syllables):
            duration = rng.uniform(0.12, 0.22) * 160 / speaker.speed
            n = int(duration * SAMPLE_RATE)
            t = np.arange(n) / SAMPLE_RATE
            f0 = speaker.f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
            phase = np.cumsum(f0) / SAMPLE_RATE
            voiced = (phase % 1.0) - 0.5  # sawtooth: a crude glottal source rich in harmonics
            for formant in _VOWEL_FORMANTS[rng.integers(len(_VOWEL_FORMANTS))]:
                radius = np.exp(-np.pi * 90 / SAMPLE_RATE)
                theta = 2 * np.pi * formant / SAMPLE_RATE
                voiced = lfilter([1 - radius], [1, -2 * radius * np.cos(theta), radius**2], voiced)
            pieces.append(voiced * np.sin(np.pi * t / duration) ** 2)
        pieces.append(np.zeros(int(rng.uniform(0.05, 0.15) * SAMPLE_RATE)))
    wave = np.concatenate(pieces)
    return (wave / (np.abs(wave).max() + 1e-9) * 0.5).astype(np.float32)


def speech_for_video(
    speaker: Speaker, sentences: list[str], seconds: float, rng: np.random.Generator, espeak: bool
) -> np.ndarray:
    """`seconds` of speech (float32, 16 kHz): sentences in turn, separated by short pauses, cut or padded."""
    target = int(round(seconds * SAMPLE_RATE))
    parts = [np.zeros(int(0.2 * SAMPLE_RATE), dtype=np.float32)]
    with tempfile.TemporaryDirectory(prefix="moda-demo-") as tmp:
        for text in sentences:
            wave = speak_espeak(text, speaker, Path(tmp)) if espeak else speak_fallback(text, speaker, rng)
            wave = wave / (np.sqrt(np.mean(wave**2)) + 1e-9) * 0.1
            parts += [wave, np.zeros(int(rng.uniform(0.25, 0.5) * SAMPLE_RATE), dtype=np.float32)]
            if sum(map(len, parts)) >= target:
                break
    wave = np.concatenate(parts)[:target]
    return np.clip(np.pad(wave, (0, target - len(wave))), -1, 1).astype(np.float32)


def speech_envelope(wave: np.ndarray, num_frames: int) -> np.ndarray:
    """Loudness per video frame in [0, 1]: RMS of each 40 ms frame, lightly smoothed, over the 95th percentile."""
    frames = fit_to_frames(wave, num_frames).reshape(num_frames, SAMPLES_PER_FRAME)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    rms = np.convolve(np.pad(rms, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    return np.clip(rms / (np.percentile(rms, 95) + 1e-9), 0, 1).astype(np.float32)


def sway_pattern(speaker: Speaker, num_frames: int, offset: float) -> np.ndarray:
    """Per-frame head sway [T, 3]: roll (degrees, clockwise on screen as in the motion layout), x and y shift
    (pixels); `offset` seconds into the speaker's pattern."""
    t = offset + np.arange(num_frames) / FPS
    columns = [
        a * np.sin(2 * np.pi * f * t + p) for a, f, p in (speaker.sway_roll, speaker.sway_x, speaker.sway_y)
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def jaw_weights(points: np.ndarray) -> np.ndarray:
    """How far each face landmark [N, 2] moves when the jaw drops (1 = as far as the lower lip, 0 = fixed)."""
    mouth = points[[13, 14]].mean(0)
    face_width = np.ptp(points[:, 0])
    face_height = np.ptp(points[:, 1])
    across = np.exp(-(((points[:, 0] - mouth[0]) / (0.45 * face_width)) ** 2))
    below = np.clip((points[:, 1] - mouth[1]) / (0.03 * face_height), 0, 1)
    return across * below


def _around(points: np.ndarray, centres: tuple[int, ...], radius: float) -> np.ndarray:
    """Weight [N] of each landmark by closeness to the nearest of the `centres` landmarks (Gaussian, 1 at them)."""
    distance = np.linalg.norm(points[:, None] - points[list(centres)][None], axis=2).min(1)
    return np.exp(-0.5 * (distance / radius) ** 2)


def expression_offsets(points: np.ndarray, emotion: str) -> np.ndarray:
    """The constant landmark displacement [N, 2] (pixels) that acts `emotion` on the photo, held for the whole
    video: happiness raises and widens the mouth corners; sadness lowers them and raises the inner brows;
    surprise raises the brows and the upper eyelids; anything else (neutral) moves nothing. Each displacement
    fades out with a Gaussian around the landmarks it moves, so the rest of the face stays where it is."""
    height = float(np.ptp(points[:, 1]))
    offsets = np.zeros_like(points, dtype=np.float64)
    corners = _around(points, MOUTH_CORNERS, 0.05 * height)[:, None]
    # +1 for the landmark on the corner's own side of the face, pointing away from the mouth centre
    outward = np.sign(points[:, 0] - points[list(MOUTH_CORNERS)].mean(0)[0])[:, None]
    if emotion == "happiness":
        offsets += corners * np.concatenate([0.03 * height * outward, np.full_like(outward, -0.07 * height)], 1)
    elif emotion == "sadness":
        offsets += corners * np.array([0.0, 0.06 * height])
        offsets += _around(points, INNER_BROWS, 0.04 * height)[:, None] * np.array([0.0, -0.035 * height])
    elif emotion == "surprise":
        offsets += _around(points, BROWS, 0.05 * height)[:, None] * np.array([0.0, -0.05 * height])
        offsets += _around(points, UPPER_LIDS, 0.02 * height)[:, None] * np.array([0.0, -0.015 * height])
    return offsets


@dataclass
class VideoJob:
    """One video to build: where, who, what is said."""

    name: str
    out_dir: str
    speaker: Speaker
    sentences: list[str]
    seconds: float
    seed: int
    index: int
    espeak: bool
    emotion: str = "neutral"


def face_photo() -> tuple[np.ndarray, np.ndarray]:
    """The demo face (uint8 [320, 320, 3]) and its 468 FaceMesh landmarks in pixels [468, 2]."""
    from skimage import data

    from moda_train.perception.motion.landmarks import LandmarksMotionExtractor
    from moda_train.perception.motion.pose import normalised_to_pixels

    top, bottom, left, right = PHOTO_CROP
    photo = cv2.resize(
        data.astronaut()[top:bottom, left:right], (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA
    )
    landmarks = LandmarksMotionExtractor().detect(photo[None])[0]
    if np.isnan(landmarks).any():
        raise RuntimeError("FaceMesh found no face in the demo photo; the mediapipe install looks broken")
    return photo, normalised_to_pixels(landmarks[:, :2], FRAME_SIZE)


def build_video(job: VideoJob, photo: np.ndarray, points: np.ndarray) -> str:
    """Render, voice and write one demo video with its envelope and sway files; returns its name."""
    speaker = job.speaker
    rng = np.random.default_rng([job.seed, job.index, 11])
    if speaker.mirrored:
        photo = np.ascontiguousarray(photo[:, ::-1])
        points = points.copy()
        points[:, 0] = FRAME_SIZE - points[:, 0]
    photo = np.clip(photo * np.array(speaker.tint), 0, 255).astype(np.uint8)
    num_frames = int(round(job.seconds * FPS))
    wave = speech_for_video(speaker, job.sentences, job.seconds, rng, job.espeak)
    envelope = speech_envelope(wave, num_frames)
    sway = sway_pattern(speaker, num_frames, offset=float(rng.uniform(0, 10)))

    warper = FaceWarper(points, photo.shape[:2], (INNER_UPPER_LIP, INNER_LOWER_LIP))
    drop = jaw_weights(points)[:, None] * np.array([0.0, MAX_JAW_DROP * np.ptp(points[:, 1])])
    acted = points + expression_offsets(points, job.emotion)
    centre = tuple(float(c) for c in points.mean(0))
    frames = np.empty((num_frames, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    for t in range(num_frames):
        talking = warper.warp(photo, acted + envelope[t] * drop)
        roll, dx, dy = sway[t]
        # OpenCV's angle turns counter-clockwise on screen; the motion layout's roll is clockwise (y points down).
        head = cv2.getRotationMatrix2D(centre, -float(roll), 1.0)
        head[:, 2] += (dx, dy)
        frames[t] = cv2.warpAffine(talking, head, (FRAME_SIZE, FRAME_SIZE), borderMode=cv2.BORDER_REFLECT_101)

    out_dir = Path(job.out_dir)
    np.save(out_dir / f"{job.name}.envelope.npy", envelope)
    np.save(out_dir / f"{job.name}.sway.npy", sway)
    write_video(out_dir / f"{job.name}.mp4", frames, fps=FPS, audio=wave, sample_rate=SAMPLE_RATE)
    return job.name


def is_complete(out_dir: Path, name: str) -> bool:
    """A video counts as done when its mp4 (renamed into place last) and both side files exist."""
    return all((out_dir / f"{name}{suffix}").is_file() for suffix in (".mp4", ".envelope.npy", ".sway.npy"))


def plan(
    num_videos: int, num_speakers: int, seconds: float, seed: int, out_dir: Path, espeak: bool
) -> list[VideoJob]:
    """The jobs of a corpus: videos dealt to speakers in turn, each with its own run of sentences."""
    if num_videos < 1 or num_speakers < 1 or seconds <= 0:
        raise ValueError("--num-videos and --num-speakers must be >= 1 and --seconds > 0")
    speakers = [make_speaker(s, seed) for s in range(min(num_speakers, num_videos))]
    order = np.random.default_rng([seed, 3]).permutation(len(SENTENCES))
    per_video = max(2, int(np.ceil(seconds / 2.0)))
    jobs = []
    for index in range(num_videos):
        speaker = speakers[index % len(speakers)]
        take = [SENTENCES[order[(index * per_video + k) % len(SENTENCES)]] for k in range(per_video + 2)]
        take_index = index // len(speakers)
        name = f"{speaker.name}_{take_index:03d}"
        emotion = EMOTION_CYCLE[take_index % len(EMOTION_CYCLE)]
        jobs.append(VideoJob(name, str(out_dir), speaker, take, seconds, seed, index, espeak, emotion))
    return jobs


def speaker_split(speakers: list[str]) -> dict[str, str]:
    """Fixed splits for the demo corpus: the last speaker is test, the one before it val, the rest train.

    A hash split of six speakers can leave a split empty; the quickstart evaluates on test and validates on val,
    so both always get a speaker no model trains on. With fewer than 3 speakers the split is left to the
    shard config (empty)."""
    ordered = sorted(speakers)
    if len(ordered) < 3:
        return {name: "" for name in ordered}
    return {name: "train" for name in ordered[:-2]} | {ordered[-2]: "val", ordered[-1]: "test"}


def write_labels(out_dir: Path, jobs: list[VideoJob]) -> Path:
    """labels.csv for the generic layout: path (relative to the csv), speaker, emotion (the acted one), split."""
    path = out_dir / "labels.csv"
    splits = speaker_split(list({job.speaker.name for job in jobs}))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "speaker", "emotion", "split"])
        for job in jobs:
            writer.writerow([f"{job.name}.mp4", job.speaker.name, job.emotion, splits[job.speaker.name]])
    return path


def build_corpus(
    out_dir: str | Path,
    num_videos: int = 24,
    num_speakers: int = 6,
    seconds: float = 5.0,
    seed: int = 0,
    workers: int = 2,
    use_espeak: bool | None = None,
    progress: bool = True,
) -> list[Path]:
    """Build (or complete) the demo corpus in `out_dir`; returns the mp4 paths. `use_espeak=None` uses espeak-ng
    when it is on PATH and the built-in fallback voice otherwise."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    espeak = shutil.which("espeak-ng") is not None if use_espeak is None else use_espeak
    if espeak and shutil.which("espeak-ng") is None:
        raise FileNotFoundError("use_espeak=True but espeak-ng is not on PATH (apt-get install espeak-ng)")
    jobs = plan(num_videos, num_speakers, seconds, seed, out_dir, espeak)
    todo = [job for job in jobs if not is_complete(out_dir, job.name)]
    if todo:
        photo, points = face_photo()
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="demo videos", disable=not progress)
        if workers <= 1:
            for job in todo:
                build_video(job, photo, points)
                bar.update()
        else:
            # spawn: the parent has run mediapipe and OpenCV threads, which fork() does not copy safely.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(build_video, job, photo, points) for job in todo]
                for future in as_completed(futures):
                    future.result()
                    bar.update()
        bar.close()
    write_labels(out_dir, jobs)
    record = {
        "seed": seed,
        "num_videos": num_videos,
        "seconds": seconds,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "frame_size": FRAME_SIZE,
        "voice": "espeak-ng" if espeak else "built-in fallback",
        "speakers": [asdict(speaker) for speaker in {job.speaker.name: job.speaker for job in jobs}.values()],
    }
    (out_dir / "corpus.json").write_text(json.dumps(record, indent=2))
    return [out_dir / f"{job.name}.mp4" for job in jobs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo/videos", help="output folder (default: demo/videos)")
    parser.add_argument("--num-videos", type=int, default=24, help="videos to build (default: 24)")
    parser.add_argument(
        "--num-speakers", type=int, default=6, help="speakers the videos are dealt to (default: 6)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each video (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed builds the same corpus")
    parser.add_argument("--workers", type=int, default=2, help="parallel worker processes (default: 2)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    paths = build_corpus(args.out, args.num_videos, args.num_speakers, args.seconds, args.seed, args.workers)
    print(
        f"{len(paths)} videos in {args.out} ({time.perf_counter() - start:.1f} s); labels: {args.out}/labels.csv"
    )


if __name__ == "__main__":
    main()
