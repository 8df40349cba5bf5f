"""A web page for one checkpoint: upload (or record) speech and a photo, get the talking-head video.

    moda-demo --checkpoint runs/mmdit_tiny_cpu/checkpoints/last.ckpt      # then open http://127.0.0.1:7860

The page (Gradio, the `demo` extra: `pip install 'moda-train[demo]'`) takes a photo with one face, speech (any
file ffmpeg reads, or the microphone), an emotion, the audio and emotion guidance scales and a seed, and returns
the mp4 with the speech muxed in, as `moda-generate` makes it. The checkpoint, extractors and renderer load once at
start; requests run one at a time (Gradio's queue), and the bar on the page follows the motion windows and the
rendered frames, so long audio shows how far it is. Nothing leaves the machine: no share link, no analytics.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from moda_train.core.motion_layout import EMOTIONS, NULL_EMOTION
from moda_train.core.optional import MissingExtra, import_optional
from moda_train.generation.inputs import load_image, load_speech

NO_EMOTION = "none (unconditioned)"


def build_demo(pipeline: Any, out_dir: str | Path) -> Any:
    """The Gradio Blocks app around a loaded `GenerationPipeline`; videos are written under `out_dir`."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before the import: it reads this once
    gr = import_optional("gradio", "the web demo")
    out_dir = Path(out_dir)
    generator = pipeline.generator

    def animate(
        photo: str | None,
        speech: str | None,
        emotion: str,
        guidance_audio: float,
        guidance_emotion: float,
        seed: float,
        progress: Any = gr.Progress(track_tqdm=True),  # how Gradio asks for a progress bar
    ) -> str:
        if not photo or not speech:
            raise gr.Error("Upload a photo and speech (or record it) first.")
        try:
            image, wave = load_image(photo), load_speech(speech)
            generator.guidance_audio, generator.guidance_emotion = float(guidance_audio), float(guidance_emotion)
            emotion_id = NULL_EMOTION if emotion == NO_EMOTION else EMOTIONS.index(emotion)
            paths = pipeline.run(image, wave, out_dir, f"demo-{uuid.uuid4().hex[:8]}", [int(seed)], emotion_id)
        except (FileNotFoundError, ValueError) as err:  # a bad upload or a photo without a face: one line
            raise gr.Error(str(err)) from err
        return str(paths[0])

    with gr.Blocks(title="MoDA talking head") as demo:
        gr.Markdown("## MoDA: one photo + speech -> a talking-head video")
        with gr.Row():
            with gr.Column():
                photo = gr.Image(label="photo (one face)", type="filepath", sources=["upload"])
                speech = gr.Audio(label="speech", type="filepath", sources=["upload", "microphone"])
                emotion = gr.Dropdown([NO_EMOTION, *EMOTIONS], value=NO_EMOTION, label="emotion")
                guidance_audio = gr.Slider(
                    1.0, 3.0, value=generator.guidance_audio, step=0.05, label="audio guidance"
                )
                guidance_emotion = gr.Slider(
                    1.0, 3.0, value=generator.guidance_emotion, step=0.05, label="emotion guidance"
                )
                seed = gr.Number(value=0, precision=0, label="seed")
                run = gr.Button("Generate", variant="primary")
            with gr.Column():
                video = gr.Video(label="generated video", format="mp4")
        run.click(animate, [photo, speech, emotion, guidance_audio, guidance_emotion, seed], video)
    return demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moda-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="MMDiT checkpoint (.ckpt) from moda-train")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--out", default="", help="folder for the generated videos (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=None, help="Euler steps (default: the checkpoint's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: serves until interrupted; 1 with a one-line error for a missing checkpoint or extra."""
    args = build_parser().parse_args(argv)
    if not Path(args.checkpoint).exists():
        print(f"error: checkpoint not found: {args.checkpoint} (train one with moda-train)", file=sys.stderr)
        return 1
    try:
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the demo
        import_optional("gradio", "the web demo")
    except MissingExtra as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from moda_train.generation.pipeline import GenerationPipeline

    try:
        pipeline = GenerationPipeline(args.checkpoint, steps=args.steps)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="moda-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    demo = build_demo(pipeline, out_dir).queue()
    print(f"serving http://{args.host}:{args.port}  (videos are written to {out_dir}; Ctrl-C stops)", flush=True)
    demo.launch(
        server_name=args.host, server_port=args.port, allowed_paths=[str(out_dir)], share=False, quiet=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
