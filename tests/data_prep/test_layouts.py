"""Layout adapters on small fake corpora laid out like the real ones, and the split-by-speaker rules."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from data_prep.config import InputConfig, ShardConfig
from data_prep.corpus_layouts import list_sources, make_key, parse_emotion, parse_timestamp
from data_prep.splits import assign_split, speaker_splits
from moda_train.core.config_loader import load_config
from moda_train.core.motion_layout import EMOTIONS, NULL_EMOTION

HDTF_NAMES = Path(__file__).with_name("hdtf_release_names.txt")
REPO = Path(__file__).resolve().parents[2]


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
    # Sorted by key; a clean `.mp4` name keeps its parts, anything else (dots, which WebDataset splits on, or
    # another ending) keeps its readable remains plus a digest of the exact name.
    assert [(s.key, s.source, s.speaker) for s in sources] == [
        ("mine-alice-take1", "alice/take1.mp4", "alice"),
        (make_key("mine", "alice", "take.2.MOV"), "alice/take.2.MOV", "alice"),
        (make_key("mine", "bob.mkv"), "bob.mkv", "bob"),
    ]
    assert sources[1].key.startswith("mine-alice-take_2_MOV--") and sources[2].key.startswith("mine-bob_mkv--")
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
    assert speakers == {
        "WDA_BarackObama_000.mp4": "BarackObama",
        "RD_Radio1_001.mp4": "Radio1",
        "WRA_Kim_002.mp4": "Kim",
    }
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
    assert make_key("c", "a", "b_c") == "c-a-b_c"
    assert make_key("c", "a b/c.d").startswith("c-a_b_c_d--")


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


def test_keys_are_unique_and_depend_on_the_name_alone(tmp_path):
    names = [
        "x.mp4", "x.mov", "a b.mp4", "a_b.mp4", "a/b.mp4", "a-b.mp4", "北京.mp4", "上海.mp4", "Москва.mp4",
        "take.mp4", "take_c000.mp4", "_lead.mp4", "lead.mp4", "a__b.mp4",
    ]  # fmt: skip
    for name in names:
        touch(tmp_path / name)
    (tmp_path / os.fsdecode(b"caf\xe9.mp4")).write_bytes(b"x")  # Latin-1 bytes: not a UTF-8 name
    sources = list_sources(InputConfig(root=str(tmp_path)), "generic")
    keys = {s.source: s.key for s in sources}
    assert len(keys) == len(names) + 1 and len(set(keys.values())) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", key) for key in keys.values())
    # Clean names read as they are; a source key never looks like a clip key (`_c<k>`).
    assert keys["x.mp4"] == "generic-x" and keys["a_b.mp4"] == "generic-a_b" and keys["a/b.mp4"] == "generic-a-b"
    assert keys["take.mp4"] == "generic-take" and keys["take_c000.mp4"].startswith("generic-take_c000--")
    assert keys["北京.mp4"].startswith("generic--") and keys["Москва.mp4"].startswith("generic--")
    # A key is a function of the name alone: listing one file by itself gives the same key.
    for name in ("x.mov", "take_c000.mp4", "上海.mp4"):
        alone = tmp_path.parent / f"alone_{abs(hash(name))}"
        touch(alone / name)
        assert list_sources(InputConfig(root=str(alone)), "generic")[0].key == keys[name]


def test_listing_keeps_every_entry_with_a_video_ending(tmp_path):
    touch(tmp_path / "good.mp4")
    (tmp_path / "folder.mp4").mkdir()
    touch(tmp_path / "folder.mp4" / "inner.mp4")
    os.mkfifo(tmp_path / "pipe.mp4")
    (tmp_path / "loop_a.mp4").symlink_to(tmp_path / "loop_b.mp4")
    (tmp_path / "loop_b.mp4").symlink_to(tmp_path / "loop_a.mp4")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "parent").symlink_to(tmp_path)  # a folder link back up: followed once, no endless walk
    sources = list_sources(InputConfig(root=str(tmp_path)), "generic")
    assert [s.source for s in sources if "/" not in s.source or s.source.startswith("folder")] == [
        "folder.mp4", "folder.mp4/inner.mp4", "good.mp4", "loop_a.mp4", "loop_b.mp4", "pipe.mp4",
    ]  # fmt: skip
    assert len(sources) == 6


def test_hdtf_speaker_is_the_person_in_every_released_name(tmp_path):
    # The names of the HDTF release's WDA, WRA and RD annotation files (tests/data_prep/hdtf_release_names.txt),
    # listed both as the release spells them (`AmyKlobuchar0.mp4`) and as download scripts name the files
    # (`WDA_AmyKlobuchar0_000.mp4`).
    names = [line for line in HDTF_NAMES.read_text().splitlines() if line and not line.startswith("#")]
    assert len(names) == 369
    bare = {name.split("_", 1)[1]: name for name in names}
    assert len(bare) == len(names)
    # Ground truth: a WDA/WRA name is a person plus a video index; an RD name is one unnamed speaker each.
    person = {
        name: name if name.startswith("RD_") else re.sub(r"\d+$", "", name.split("_", 1)[1]) for name in names
    }
    several = {p for p in person.values() if list(person.values()).count(p) > 1}
    assert len(several) == 77
    listing = tmp_path / "annotion_time.txt"
    listing.write_text("".join(f"{b}.mp4 00:05-00:40\n{n}_000.mp4 00:05-00:40\n" for b, n in bare.items()))
    overrides = [f"input.root={tmp_path}", f"input.annotations={listing}"]
    cfg, _ = load_config(REPO / "configs" / "data_prep" / "hdtf.yaml", overrides, schema=ShardConfig)
    sources = list_sources(cfg.input, cfg.corpus)
    assert len(sources) == 2 * len(names)
    fractions = cfg.split.val_fraction, cfg.split.test_fraction
    splits = speaker_splits(((s.speaker, s.split) for s in sources), *fractions, cfg.split.seed)
    splits_of_person: dict[str, set[str]] = {}
    for source in sources:
        stem = Path(source.source).stem
        name = bare.get(stem) or stem.removesuffix("_000")
        splits_of_person.setdefault(person[name], set()).add(splits[source.speaker])
    assert len(splits_of_person) == len(set(person.values()))
    assert all(len(found) == 1 for found in splits_of_person.values())
    assert set().union(*splits_of_person.values()) == {"train", "val", "test"}
    speaker = {Path(s.source).stem: s.speaker for s in sources}
    assert speaker["AmyKlobuchar1"] == speaker["WDA_AmyKlobuchar0_000"] == "AmyKlobuchar"
    assert speaker["TerriSewell"] == speaker["TerriSewell1"] == speaker["WDA_TerriSewell0_000"] == "TerriSewell"
    assert speaker["Radio1"] != speaker["Radio10"]


def test_speaker_pattern_overrides_the_layout_rule(tmp_path):
    touch(tmp_path / "clips" / "anna-take1.mp4")
    touch(tmp_path / "clips" / "anna-take2.mp4")
    touch(tmp_path / "clips" / "ben-take1.mp4")
    cfg = InputConfig(root=str(tmp_path), speaker_pattern=r"clips/(?P<speaker>[a-z]+)-take\d+")
    assert [s.speaker for s in list_sources(cfg, "generic")] == ["anna", "anna", "ben"]
    with pytest.raises(ValueError, match=r"does not match the name 'clips/ben-take1'"):
        list_sources(InputConfig(root=str(tmp_path), speaker_pattern=r"clips/anna-.*"), "generic")


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
