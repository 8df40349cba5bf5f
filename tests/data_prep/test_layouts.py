"""Layout adapters on small fake corpora laid out like the real ones, and the split-by-speaker rules."""

from __future__ import annotations

import json

import pytest

from data_prep.config import InputConfig
from data_prep.corpus_layouts import list_sources, make_key, parse_emotion, parse_timestamp
from data_prep.splits import assign_split, speaker_splits
from moda_train.core.motion_layout import EMOTIONS, NULL_EMOTION


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_generic_folder_without_csv(tmp_path):
    touch(tmp_path / "alice" / "take1.mp4")
    touch(tmp_path / "alice" / "take.2.MOV")
    touch(tmp_path / "bob.mkv")
    touch(tmp_path / "notes.txt")
    sources = list_sources(InputConfig(root=str(tmp_path)), "mine")
    # Sorted by key; dots become `_` because WebDataset splits key and extension at the first dot.
    assert [(s.key, s.source, s.speaker) for s in sources] == [
        ("mine-alice_take1", "alice/take1.mp4", "alice"),
        ("mine-alice_take_2", "alice/take.2.MOV", "alice"),
        ("mine-bob", "bob.mkv", "bob"),
    ]
    assert all(s.emotion == NULL_EMOTION and s.split is None for s in sources)


def test_generic_csv_labels(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,speaker,emotion,split\na.mp4,s1,happy,train\nsub/b.mp4,s2,Sadness,val\nc.mp4,s1,,\n")
    sources = list_sources(InputConfig(root=str(tmp_path), annotations=str(labels)), "generic")
    by_source = {s.source: s for s in sources}
    assert by_source["a.mp4"].emotion == EMOTIONS.index("happiness")
    assert by_source["sub/b.mp4"].emotion == EMOTIONS.index("sadness")
    assert by_source["c.mp4"].emotion == NULL_EMOTION
    assert by_source["sub/b.mp4"].path == str(tmp_path / "sub" / "b.mp4")
    # c.mp4 has no split of its own: its speaker's given split (train) wins over the hash.
    splits = speaker_splits(((s.speaker, s.split) for s in sources), 0.5, 0.5)
    assert splits == {"s1": "train", "s2": "val"}


@pytest.mark.parametrize(
    "content, message",
    [
        ("file,speaker\na.mp4,s\n", "needs a header with a `path` column"),
        ("path,emotion\na.mp4,bored\n", r"line 2: unknown emotion 'bored'"),
        ("path,speaker,split\na.mp4,s,train\nb.mp4,s,test\n", "speakers assigned to more than one split: s"),
        ("path,speaker,split\na.mp4,s,holdout\n", "split 'holdout' is not one of"),
        ("path\na.mp4\n./a.mp4\n", "same clip key"),
    ],
)
def test_generic_csv_errors_are_named(tmp_path, content, message):
    labels = tmp_path / "labels.csv"
    labels.write_text(content)
    with pytest.raises(ValueError, match=message):
        list_sources(InputConfig(root=str(tmp_path), annotations=str(labels)), "generic")


def test_hdtf_clip_list(tmp_path):
    listing = tmp_path / "WDA_annotion_time.txt"
    listing.write_text(
        "WDA_BarackObama_000.mp4 00:05-00:40 01:00-1:30.5\n# comment line\nRD_Radio1_001 \n\n"
        "WRA_Kim_002.mp4 0:0:10-0:0:20\n"
    )
    sources = list_sources(InputConfig(root=str(tmp_path), layout="hdtf", annotations=str(listing)), "hdtf")
    spans = {(s.source, s.start_s, s.end_s) for s in sources}
    assert spans == {
        ("WDA_BarackObama_000.mp4", 5.0, 40.0),
        ("WDA_BarackObama_000.mp4", 60.0, 90.5),
        ("RD_Radio1_001.mp4", 0.0, None),
        ("WRA_Kim_002.mp4", 10.0, 20.0),
    }
    speakers = {s.source: s.speaker for s in sources}
    assert (
        speakers["WDA_BarackObama_000.mp4"] == "WDA_BarackObama" and speakers["RD_Radio1_001.mp4"] == "RD_Radio1"
    )
    assert len({s.key for s in sources}) == 4


def test_hdtf_bad_range_names_line(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("a.mp4 00:10-00:40\nb.mp4 00:50-00:20\n")
    with pytest.raises(ValueError, match="line 2: range '00:50-00:20' ends before it starts"):
        list_sources(InputConfig(root=str(tmp_path), layout="hdtf", annotations=str(listing)), "hdtf")


def test_mead_emotion_and_intensity_from_path(tmp_path):
    touch(tmp_path / "M003" / "video" / "front" / "angry" / "level_3" / "001.mp4")
    touch(tmp_path / "W009" / "video" / "front" / "neutral" / "level_1" / "014.mp4")
    touch(tmp_path / "W009" / "video" / "left_30" / "neutral" / "level_1" / "014.mp4")  # not frontal: ignored
    sources = list_sources(InputConfig(root=str(tmp_path), layout="mead"), "mead")
    assert [(s.speaker, s.emotion, s.intensity) for s in sources] == [
        ("M003", EMOTIONS.index("anger"), 3),
        ("W009", EMOTIONS.index("neutral"), 1),
    ]
    assert sources[0].key == "mead-M003-angry-level_3-001"


def test_celebvhq_annotations(tmp_path):
    info = {
        "meta_info": {},
        "clips": {
            "abc_0": {
                "ytb_id": "abc",
                "duration": {"start_sec": 1.5, "end_sec": 9.0},
                "attributes": {"emotion": {"sep_flag": False, "labels": "happy"}},
            },
            "abc_1": {
                "ytb_id": "abc",
                "duration": {"start_sec": 20.0, "end_sec": 30.0},
                "attributes": {
                    "emotion": {
                        "sep_flag": True,
                        "labels": [
                            {"emotion": "neutral", "start_sec": 20.0, "end_sec": 22.0},
                            {"emotion": "surprise", "start_sec": 22.0, "end_sec": 30.0},
                        ],
                    }
                },
            },
            "xyz_0": {"ytb_id": "xyz", "duration": {"start_sec": 0, "end_sec": 5}, "attributes": {}},
        },
    }
    path = tmp_path / "celebvhq_info.json"
    path.write_text(json.dumps(info))
    touch(tmp_path / "xyz_0.mp4")  # already cut by the download script: used whole
    sources = list_sources(InputConfig(root=str(tmp_path), layout="celebvhq", annotations=str(path)), "celebvhq")
    got = {s.key: (s.source, s.speaker, s.emotion, s.start_s, s.end_s) for s in sources}
    assert got == {
        "celebvhq-abc_0": ("abc.mp4", "abc", EMOTIONS.index("happiness"), 1.5, 9.0),
        "celebvhq-abc_1": ("abc.mp4", "abc", EMOTIONS.index("surprise"), 20.0, 30.0),
        "celebvhq-xyz_0": ("xyz_0.mp4", "xyz", NULL_EMOTION, 0.0, None),
    }


def test_celebvhq_broken_json_is_a_clear_error(tmp_path):
    path = tmp_path / "info.json"
    path.write_text('{"videos": {}}')
    with pytest.raises(ValueError, match="expected a JSON object with a `clips` mapping"):
        list_sources(InputConfig(root=str(tmp_path), layout="celebvhq", annotations=str(path)), "celebvhq")


def test_small_helpers():
    assert parse_timestamp("01:02:03.5") == 3723.5 and parse_timestamp("7") == 7.0
    with pytest.raises(ValueError, match="not a timestamp"):
        parse_timestamp("1m20")
    assert parse_emotion("Surprised") == EMOTIONS.index("surprise") and parse_emotion(3) == 3
    assert make_key("c", "a b/c.d") == "c-a_b_c_d"


def test_split_by_speaker_is_stable_and_proportional():
    speakers = [f"spk{i:04d}" for i in range(4000)]
    first = {s: assign_split(s, 0.1, 0.2, seed=7) for s in speakers}
    # Adding speakers (or clips) never moves an existing speaker: the split is a function of the name alone.
    more = {s: assign_split(s, 0.1, 0.2, seed=7) for s in speakers + [f"new{i}" for i in range(100)]}
    assert all(more[s] == first[s] for s in speakers)
    counts = {split: sum(v == split for v in first.values()) / len(speakers) for split in ("train", "val", "test")}
    assert counts["test"] == pytest.approx(0.2, abs=0.03) and counts["val"] == pytest.approx(0.1, abs=0.03)
    other_seed = {s: assign_split(s, 0.1, 0.2, seed=8) for s in speakers}
    assert other_seed != first


def test_no_speaker_in_two_splits():
    pairs = [("a", None), ("a", None), ("b", "test"), ("b", None), ("c", None)]
    splits = speaker_splits(pairs, 0.3, 0.3, seed=1)
    assert set(splits) == {"a", "b", "c"} and splits["b"] == "test"


def test_relative_annotations_follow_input_root(tmp_path, monkeypatch):
    corpus = tmp_path / "elsewhere" / "videos"
    corpus.mkdir(parents=True)
    (corpus / "labels.csv").write_text("path,speaker\na.mp4,s1\n")
    (tmp_path / "elsewhere" / "list.csv").write_text("path,speaker\nb.mp4,s2\n")
    monkeypatch.chdir(tmp_path)  # neither file is reachable from the working folder by its relative name
    inside = list_sources(InputConfig(root=str(corpus), annotations="labels.csv"), "generic")
    beside = list_sources(InputConfig(root=str(corpus), annotations="../list.csv"), "generic")
    assert [s.source for s in inside] == ["a.mp4"] and [s.source for s in beside] == ["b.mp4"]
    with pytest.raises(ValueError, match=f"input.annotations='nope.csv': file not found at {corpus / 'nope.csv'}"):
        list_sources(InputConfig(root=str(corpus), annotations="nope.csv"), "generic")
