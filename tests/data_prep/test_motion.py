"""Motion extraction: the `landmarks` backend on real FaceMesh output, the pose convention, liveportrait's gate."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

from data_prep.demo_corpus import INNER_LOWER_LIP, INNER_UPPER_LIP, face_photo, jaw_weights
from moda_train.core.motion_layout import LIP_DIMS, LIP_KEYPOINTS, NUM_KEYPOINTS, ROTATION, TRANSLATION
from moda_train.perception.face_warp import FaceWarper
from moda_train.perception.motion import NoFaceError, get_motion_extractor, motion_to_image_keypoints
from moda_train.perception.motion.landmarks import INNER_LIP_KEYPOINTS, KEYPOINT_LANDMARKS
from moda_train.perception.motion.liveportrait import LIVEPORTRAIT_PATH_ENV
from moda_train.perception.motion.pose import normalised_to_pixels, rotation_angles, rotation_matrix

CROP = 256
NUM_FRAMES = 30


@pytest.fixture(scope="module")
def clip():
    """30 frames of the demo face at 256 px: the head rolls and shifts, the mouth opens and closes."""
    photo, points = face_photo()
    warper = FaceWarper(points, photo.shape[:2], (INNER_UPPER_LIP, INNER_LOWER_LIP))
    drop = jaw_weights(points)[:, None] * np.array([0.0, 0.09 * np.ptp(points[:, 1])])
    t = np.arange(NUM_FRAMES)
    opening = 0.5 - 0.5 * np.cos(2 * np.pi * t / 10)  # three open-close cycles
    roll = 6.0 * np.sin(2 * np.pi * t / NUM_FRAMES)  # degrees, clockwise on screen
    shift = 12.0 * np.sin(2 * np.pi * t / 15 + 1.0)  # pixels to the right
    centre = tuple(float(c) for c in points.mean(0))
    frames = []
    for k in t:
        image = warper.warp(photo, points + opening[k] * drop)
        head = cv2.getRotationMatrix2D(centre, -roll[k], 1.0)
        head[0, 2] += shift[k]
        image = cv2.warpAffine(image, head, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)
        frames.append(cv2.resize(image, (CROP, CROP), interpolation=cv2.INTER_AREA))
    return np.stack(frames), opening, roll, shift * CROP / photo.shape[1]


@pytest.fixture(scope="module")
def extractor():
    return get_motion_extractor("landmarks")


@pytest.fixture(scope="module")
def extracted(clip, extractor):
    frames = clip[0]
    return extractor.extract(frames, ref_index=0), extractor.detect(frames)


def test_keypoint_table_puts_lips_at_the_lip_indices():
    lip_landmarks = {index for edge in FACEMESH_LIPS for index in edge}
    assert len(KEYPOINT_LANDMARKS) == NUM_KEYPOINTS == len(set(KEYPOINT_LANDMARKS))
    for keypoint in range(NUM_KEYPOINTS):
        assert (KEYPOINT_LANDMARKS[keypoint] in lip_landmarks) == (keypoint in LIP_KEYPOINTS), keypoint
    assert set(INNER_LIP_KEYPOINTS[0] + INNER_LIP_KEYPOINTS[1]) <= set(LIP_KEYPOINTS)


def test_output_contract(extracted):
    sequence, _ = extracted
    assert sequence.motion.shape == (NUM_FRAMES, 70) and sequence.motion.dtype == np.float32
    assert sequence.identity.shape == (63,) and sequence.identity.dtype == np.float32
    assert sequence.valid.dtype == bool and sequence.valid.all()
    np.testing.assert_allclose(sequence.motion[0, :63], 0, atol=1e-5)  # the reference frame is the identity
    assert (sequence.motion[:, 66] == 0).all()  # tz


def test_round_trip_to_detected_landmark_pixels(extracted):
    sequence, landmarks = extracted
    driven = motion_to_image_keypoints(sequence.motion, sequence.identity, crop_size=CROP)
    detected = normalised_to_pixels(landmarks[:, list(KEYPOINT_LANDMARKS), :2], CROP)
    error = np.abs(driven - detected).max()
    assert driven.shape == (NUM_FRAMES, NUM_KEYPOINTS, 2)
    assert error < 0.01, f"round-trip error {error:.4f} px"


def test_pose_follows_the_head(clip, extracted):
    _, _, roll, shift = clip
    sequence, _ = extracted
    measured_roll = sequence.motion[:, ROTATION][:, 2]
    # Roll is measured against the reference frame's own face frame: compare changes, not absolute angles.
    error = np.abs((measured_roll - measured_roll[0]) - (roll - roll[0]))
    assert error.mean() < 0.6 and error.max() < 2.0, error  # degrees; FaceMesh jitters by about half a degree
    assert np.corrcoef(measured_roll, roll)[0, 1] > 0.99
    tx_pixels = sequence.motion[:, TRANSLATION][:, 0] * CROP / 2
    # Rolling about the landmarks' mean also moves the rigid-landmark centre a little, hence not a perfect match.
    assert np.corrcoef(tx_pixels, shift)[0, 1] > 0.9
    assert np.ptp(sequence.motion[:, ROTATION][:, :2], axis=0).max() < 4  # no pitch/yaw was applied


def test_lip_dimensions_follow_the_mouth(clip, extracted):
    _, opening, _, _ = clip
    sequence, _ = extracted
    canonical = (sequence.identity + sequence.motion[:, :63]).reshape(-1, NUM_KEYPOINTS, 3)
    upper, lower = INNER_LIP_KEYPOINTS[0][1], INNER_LIP_KEYPOINTS[1][1]
    gap = np.linalg.norm(canonical[:, lower] - canonical[:, upper], axis=1)
    assert np.corrcoef(gap, opening)[0, 1] > 0.9
    # The lip dimensions carry that motion; the head rolls through the clip but the brows and eyes barely move.
    lip_motion = sequence.motion[:, list(LIP_DIMS)].std(0).mean()
    eye_brow = [3 * k + a for k in (1, 2, 3, 5, 8, 9) for a in range(3)]
    assert lip_motion > 3 * sequence.motion[:, eye_brow].std(0).mean()


def test_deterministic_and_picklable(clip, extractor, extracted):
    # Pickled as the shard pipeline's worker processes receive it, then run on the same frames.
    again = pickle.loads(pickle.dumps(extractor)).extract(clip[0], ref_index=0)
    np.testing.assert_array_equal(again.motion, extracted[0].motion)
    np.testing.assert_array_equal(again.identity, extracted[0].identity)


def test_frames_without_a_face_are_interpolated(clip, extractor):
    frames = clip[0][:9].copy()
    frames[4] = 128  # a blank grey frame: nothing to find
    sequence = extractor.extract(frames, ref_index=4)  # the reference falls back to the nearest face
    assert sequence.valid.tolist() == [True] * 4 + [False] + [True] * 4
    np.testing.assert_allclose(sequence.motion[4], (sequence.motion[3] + sequence.motion[5]) / 2, atol=1e-5)
    assert np.isfinite(sequence.identity).all()


def test_no_face_at_all_is_an_error(extractor):
    with pytest.raises(NoFaceError, match="no face found in any of the 3 frames"):
        extractor.extract(np.full((3, CROP, CROP, 3), 128, dtype=np.uint8))


def test_bad_frames_are_named(extractor):
    with pytest.raises(ValueError, match="square uint8 RGB crops"):
        extractor.extract(np.zeros((2, 256, 200, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="ref_index 5 is outside the clip's 2 frames"):
        extractor.extract(np.zeros((2, 64, 64, 3), dtype=np.uint8), ref_index=5)


def test_rotation_convention_matches_liveportrait():
    # LivePortrait's get_rotation_matrix: Rz(roll) @ Ry(yaw) @ Rx(pitch), with the usual right-handed matrices.
    pitch, yaw, roll = np.radians([12.0, -25.0, 7.0])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    np.testing.assert_allclose(rotation_matrix(np.array([12.0, -25.0, 7.0])), rz @ ry @ rx, atol=1e-12)
    angles = np.random.default_rng(0).uniform(-60, 60, size=(5, 3))
    np.testing.assert_allclose(rotation_angles(rotation_matrix(angles)), angles, atol=1e-9)


def test_motion_to_image_keypoints_checks_shapes():
    with pytest.raises(ValueError, match=r"motion must be \[T, 70\]"):
        motion_to_image_keypoints(np.zeros((4, 69)), np.zeros(63))
    with pytest.raises(ValueError, match=r"identity must be \[63\]"):
        motion_to_image_keypoints(np.zeros((4, 70)), np.zeros(60))


def test_liveportrait_without_weights_names_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv(LIVEPORTRAIT_PATH_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=LIVEPORTRAIT_PATH_ENV):
        get_motion_extractor("liveportrait")
    with pytest.raises(FileNotFoundError, match=f"weights not found at {tmp_path / 'motion_extractor.pth'}"):
        get_motion_extractor("liveportrait", path=tmp_path)
    monkeypatch.setenv(LIVEPORTRAIT_PATH_ENV, str(tmp_path / "lp.pth"))
    with pytest.raises(FileNotFoundError, match=f"weights not found at {tmp_path / 'lp.pth'}"):
        get_motion_extractor("liveportrait")


def test_unknown_backend_and_options():
    with pytest.raises(ValueError, match="unknown motion backend 'dlib'"):
        get_motion_extractor("dlib")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['refine'\]"):
        get_motion_extractor("landmarks", refine=True)


@pytest.fixture(scope="module")
def random_liveportrait(tmp_path_factory):
    """A small random network of LivePortrait's motion-extractor design, saved as LivePortrait saves its weights
    (`detector.` keys); the released ConvNeXt-V2-tiny loads the same way, only slower to run on CPU."""
    import torch

    from moda_train.perception.motion.liveportrait_net import LivePortraitMotionNet

    torch.manual_seed(0)
    net = LivePortraitMotionNet(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128))
    with torch.no_grad():  # spread the pose logits so the angles are not all at the bins' centre
        for head in (net.fc_pitch, net.fc_yaw, net.fc_roll):
            head.weight.mul_(50)
    folder = tmp_path_factory.mktemp("liveportrait")
    torch.save({f"detector.{k}": v for k, v in net.state_dict().items()}, folder / "motion_extractor.pth")
    return folder


def test_liveportrait_loads_released_layout_in_both_expression_conventions(random_liveportrait, clip):
    frames = clip[0][:3]
    native = get_motion_extractor("liveportrait", path=random_liveportrait, batch_size=2)
    assert native.convention == "liveportrait-crop,native-expression" and native.convention in native.version
    sequence = native.extract(frames, ref_index=1)
    assert sequence.motion.shape == (3, 70) and sequence.identity.shape == (63,) and sequence.valid.all()
    assert (sequence.motion[:, 66] == 0).all()
    # LivePortrait's own placement of the keypoints, straight from the network outputs ...
    raw = native.raw_outputs(frames)
    kp = raw["kp"][1]  # the reference frame's canonical keypoints
    placed = raw["scale"][:, None, None] * (kp @ rotation_matrix(raw["angles"]).transpose(0, 2, 1) + raw["exp"])
    placed = normalised_to_pixels(placed[..., :2] + raw["t"][:, None, :2], CROP)
    # ... is what the default (native) motion drives: LivePortrait's raw `exp`, as MoDA's release feeds it ...
    np.testing.assert_allclose(sequence.motion[:, :63], raw["exp"].reshape(3, 63), atol=1e-5)
    driven = motion_to_image_keypoints(sequence.motion, sequence.identity, CROP, native.expression)
    np.testing.assert_allclose(driven, placed, atol=1e-3)
    assert np.ptp(sequence.motion[:, 67:], axis=0).max() > 0  # the pose heads do respond to the frames
    # ... and the canonical option's motion, placed the framework's way, too; the two differ in the numbers.
    canonical = get_motion_extractor("liveportrait", path=random_liveportrait, native_expression=False, crop="box")
    assert canonical.convention == "box-crop,canonical-expression"
    rotated = canonical.extract(frames, ref_index=1)
    driven = motion_to_image_keypoints(rotated.motion, rotated.identity, crop_size=CROP)
    np.testing.assert_allclose(driven, placed, atol=1e-3)
    assert np.abs(rotated.motion[:, :63] - sequence.motion[:, :63]).max() > 1e-3
    with pytest.raises(ValueError, match="crop='tight': choose one of box, liveportrait"):
        get_motion_extractor("liveportrait", path=random_liveportrait, crop="tight")
    with pytest.raises(ValueError, match="native_expression must be true or false, got 'false'"):
        get_motion_extractor("liveportrait", path=random_liveportrait, native_expression="false")


def test_liveportrait_rejects_other_checkpoints(tmp_path):
    import torch

    torch.save({"detector.fc.weight": torch.zeros(2, 2)}, tmp_path / "motion_extractor.pth")
    with pytest.raises(ValueError, match="is not a LivePortrait motion-extractor checkpoint"):
        get_motion_extractor("liveportrait", path=tmp_path)
