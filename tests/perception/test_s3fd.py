"""S3FD (moda_train/perception/s3fd.py): syncnet_python's released layout loads strictly, wrong files fail clearly,
and the prior boxes, decoding, suppression and input preprocessing equal hand computations."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from moda_train.perception.s3fd import S3FDDetector, S3FDNet, decode, load_s3fd, nms, prior_boxes, select_faces
from tests.perception.s3fd_helpers import random_s3fd, reference_input, save_released

LAYOUT = Path(__file__).resolve().parents[2] / "docs" / "s3fd_layout.tsv"


def _documented() -> dict[str, tuple[int, ...]]:
    rows = [line.split("\t") for line in LAYOUT.read_text().splitlines()[1:]]
    return {key: tuple(int(d) for d in shape.strip("()").split(",") if d.strip()) for key, shape, _ in rows}


def test_documented_layout_is_the_networks():
    shapes = {key: tuple(t.shape) for key, t in S3FDNet().state_dict().items()}
    assert shapes == _documented()
    assert len(shapes) == 65 and sum(math.prod(s) for s in shapes.values()) == 22_459_110


def test_released_layout_loads_strictly_and_wrong_files_fail(tmp_path):
    net = random_s3fd(seed=3)
    loaded = load_s3fd(save_released(net, tmp_path / "sfd_face.pth"))
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training

    # face_alignment's S3FD port names its layers conv1_1 ... and shapes the conv3_3 class head differently.
    wrong = {"conv1_1.weight": torch.zeros(64, 3, 3, 3), "conv.0.weight": torch.zeros(2, 256, 3, 3)}
    wrong["conf.0.weight"] = torch.zeros(2, 256, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError) as err:
        load_s3fd(tmp_path / "wrong.pth")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'wrong.pth'}: weights do not fit S3FDNet") and "\n" not in message
    assert "missing ['vgg.0.weight'" in message and "(64)" in message  # 65 keys, conf.0.weight present
    assert "unexpected ['conv1_1.weight', 'conv.0.weight'] (2)" in message
    assert "conf.0.weight (2, 256, 3, 3) (expected (4, 256, 3, 3))" in message

    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(ValueError, match="expected a state dict, got Tensor"):
        load_s3fd(tmp_path / "tensor.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_s3fd(tmp_path / "text.pth")


def test_prior_boxes_follow_syncnet_pythons_priorbox():
    # A 40 x 80 input (H x W) with one 1 x 2 map at stride 4, min size 16: centres (j + 0.5) * 4 / W and
    # (i + 0.5) * 4 / H, size 16 / W by 16 / H.
    np.testing.assert_allclose(
        prior_boxes(40, 80, [(1, 2)]), [[0.025, 0.05, 0.2, 0.4], [0.075, 0.05, 0.2, 0.4]], rtol=1e-12
    )
    # Row-major within a map, maps in order, the second map at stride 8 and min size 32.
    priors = prior_boxes(80, 80, [(2, 2), (1, 1)])
    np.testing.assert_allclose(
        priors[:, :2], [[0.025, 0.025], [0.075, 0.025], [0.025, 0.075], [0.075, 0.075], [0.05, 0.05]]
    )
    np.testing.assert_allclose(priors[4, 2:], [0.4, 0.4])
    # The network's six maps for an 80 px input: strides 4 ... 128 (pool3 rounds up, stride-2 convs round up).
    _, logits, sizes = S3FDNet()(torch.zeros(1, 3, 80, 80))
    assert sizes == [(20, 20), (10, 10), (5, 5), (2, 2), (1, 1), (1, 1)] and logits.shape == (1, 531, 2)


def test_decode_with_variances():
    prior = np.array([[0.5, 0.5, 0.2, 0.4]])
    loc = np.array([[1.0, -0.5, 0.0, math.log(2) / 0.2]])
    # centre (0.5 + 1 * 0.1 * 0.2, 0.5 - 0.5 * 0.1 * 0.4) = (0.52, 0.48); size (0.2, 0.4 * 2)
    np.testing.assert_allclose(decode(loc, prior), [[0.42, 0.08, 0.62, 0.88]], rtol=1e-12)


def test_nms_keeps_the_best_and_drops_overlaps_above_the_threshold():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 5]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(D, A) = 50 / 100 = 0.5, IoU(D, B) = 45 / 105, IoU(A, B) = 90 / 110, C overlaps nothing.
    assert nms(boxes, scores, 0.3).tolist() == [3, 2]
    assert nms(boxes, scores, 0.6).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]  # an IoU equal to the threshold is kept
    assert nms(boxes, scores, 0.3, top_k=2).tolist() == [3]  # only D and A take part


def _logit(p: float) -> list[float]:
    return [0.0, math.log(p / (1 - p))]


def test_select_faces_thresholds_suppresses_twice_and_maps_to_pixels():
    priors = np.array(
        [
            [0.5, 0.5, 0.2, 0.2],  # face 0.99: kept
            [0.52, 0.5, 0.2, 0.2],  # face 0.98, IoU 0.82 with the first: dropped by the first suppression (0.3)
            [0.2, 0.2, 0.1, 0.1],  # face 0.95: kept
            [0.8, 0.8, 0.1, 0.1],  # face 0.5: below the confidence 0.9
            [0.62, 0.5, 0.2, 0.2],  # face 0.97, IoU 0.25 with the first: survives 0.3, dropped by the final 0.1
            [0.9, 0.1, 0.1, 0.1],  # face 0.01: not even a candidate (0.05)
        ]
    )
    logits = np.array([_logit(p) for p in (0.99, 0.98, 0.95, 0.5, 0.97, 0.01)])
    faces = select_faces(np.zeros((6, 4)), logits, priors, width=100, height=50, confidence=0.9)
    np.testing.assert_allclose(faces, [[40, 20, 60, 30, 0.99], [15, 7.5, 25, 12.5, 0.95]], rtol=1e-9)
    assert select_faces(np.zeros((6, 4)), logits, priors, 100, 50, confidence=0.995).shape == (0, 5)


def test_detector_input_is_syncnet_pythons():
    # The network sees the frame resized by 0.25 (cv2 bilinear) minus the mean, in RGB order, as detect_faces
    # builds it (tests/perception/s3fd_helpers.reference_input, written step by step like the reference).
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 160, 124, 3), dtype=np.uint8)
    seen = []
    net = S3FDNet()
    net.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    S3FDDetector(net, batch_size=1).detect(frames)
    for frame, x in zip(frames, seen):
        assert x.shape == (1, 3, 40, 31)
        torch.testing.assert_close(x, reference_input(frame), rtol=0, atol=0)
    with pytest.raises(ValueError, match="smaller than 28 px"):
        S3FDDetector(net).detect(frames[:, :104])
