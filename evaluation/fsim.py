"""F-SIM: cosine similarity of face-recognition embeddings between the reference photo and generated frames.

Embedding: dlib's ResNet face descriptor (128-d, `dlib_face_recognition_resnet_model_v1.dat`) on the face aligned
by dlib's 5-point predictor, both shipped offline by the `face_recognition_models` package (found on disk, not
imported: its `__init__` needs pkg_resources). Faces are found by dlib's HOG frontal detector (largest face); our
generated videos are aligned to their reference, so when the detector finds nothing in a frame (blur, profile) the
reference photo's face box (scaled to the frame size) is used instead, and the frame is counted in
`fallback_frames` (recorded in the report); a reference without a detected face uses the whole image.
Per video: mean over the sampled generated frames of cos(reference, frame); the benchmark value is the mean over
videos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.weights import package_file

DESCRIPTOR_FILE = "models/dlib_face_recognition_resnet_model_v1.dat"
SHAPE_FILE = "models/shape_predictor_5_face_landmarks.dat"


def fsim_weights_paths() -> list[Path]:
    """The two dlib model files F-SIM uses (raises WeightsMissing when face_recognition_models is absent)."""
    return [
        package_file("face_recognition_models", DESCRIPTOR_FILE),
        package_file("face_recognition_models", SHAPE_FILE),
    ]


class FaceEmbedder:
    """`embedder(image uint8 [H, W, 3] RGB, fallback_box) -> (float64 [128] embedding, face box, detected)`.

    A face box is (left, top, right, bottom) as fractions of the image size, so it transfers between sizes.
    """

    def __init__(self) -> None:
        import dlib

        descriptor, shape = fsim_weights_paths()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(shape))
        self.descriptor = dlib.face_recognition_model_v1(str(descriptor))

    def __call__(
        self, image: np.ndarray, fallback_box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    ) -> tuple[np.ndarray, tuple[float, float, float, float], bool]:
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        boxes = list(self.detector(image, 1))
        if boxes:
            b = max(boxes, key=lambda r: r.width() * r.height())
            box = (b.left() / width, b.top() / height, b.right() / width, b.bottom() / height)
        else:
            box = fallback_box
        rect = self._dlib.rectangle(
            int(box[0] * width), int(box[1] * height), int(box[2] * width) - 1, int(box[3] * height) - 1
        )
        embedding = np.asarray(self.descriptor.compute_face_descriptor(image, self.shape(image, rect)), np.float64)
        return embedding, box, bool(boxes)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def fsim(embedder: FaceEmbedder, reference: np.ndarray, frames: np.ndarray) -> tuple[float, int]:
    """Mean cosine similarity of frames [N, H, W, 3] to the reference image, and how many used the fallback box."""
    ref, ref_box, _ = embedder(reference)
    sims, fallbacks = [], 0
    for frame in frames:
        emb, _, detected = embedder(frame, ref_box)
        sims.append(cosine_similarity(ref, emb))
        fallbacks += not detected
    return float(np.mean(sims)), fallbacks
