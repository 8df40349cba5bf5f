"""The quickstart script stays a list of plain commands, and the clip it animates is one no model trained on."""

import re
from pathlib import Path

from data_prep.demo_corpus import plan, speaker_split

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "quickstart.sh"


def test_quickstart_has_no_inline_python():
    text = SCRIPT.read_text()
    assert not re.search(r"python3? -( |c )|<<'?PY", text), "a quickstart step runs inline Python"


def test_the_generated_clip_is_from_the_test_speaker(tmp_path):
    clips = set(re.findall(r"demo/videos/(\w+)\.mp4", SCRIPT.read_text()))
    assert len(clips) == 1
    jobs = plan(24, 6, 5.0, 0, tmp_path, espeak=False)  # the corpus the quickstart builds (its defaults)
    splits = speaker_split([job.speaker.name for job in jobs])
    (clip,) = clips
    job = next(job for job in jobs if job.name == clip)
    assert splits[job.speaker.name] == "test"
