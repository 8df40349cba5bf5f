"""Warp a face image so that its landmarks move from `src_points` to `dst_points`, filling an opening mouth.

This one operation animates the demo corpus (open the photo's mouth in time with speech, data_prep.demo_corpus)
and is the weight-free renderer of generation (warp the reference face from its keypoints to driven ones), so the
demo corpus doubles as a standing test of the renderer.

Method: piecewise-affine. The source points plus fixed anchors (a ring around the face and points along the
image border) are Delaunay-triangulated once (the topology stays the same in every frame, so the warp is
temporally smooth); each destination pixel is labelled with the destination triangle it lies in (OpenCV polygon
fill), mapped back into the source image by that triangle's affine map (vectorised numpy) and sampled with
`cv2.remap`. Only the bounding box of triangles that actually move is remapped; the rest is copied.

Inner mouth: the warp alone stretches whatever lies between the lips into a smear when they part. When the
inner-lip polygon opens wider in the destination than in the source, the mouth is redrawn: a dark interior; a
band of teeth tone under the upper lip if the source mouth was closed; if it was open, its own interior split in
two halves that follow the upper and the lower lip (teeth stay with their jaw); blended in by how much the mouth
opened. A destination equal to the source therefore reproduces the image exactly (no fill, identity map).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy.spatial import ConvexHull, Delaunay

BORDER_ANCHORS_PER_SIDE = 4  # fixed points per image edge (plus corners) that keep the background still
MOUTH_INTERIOR_RGB = (52, 18, 22)
TEETH_RGB = (214, 206, 190)
SUBPIXEL_BITS = 4  # OpenCV fills polygons with 1/16-pixel vertex precision


def _border_anchors(height: int, width: int) -> np.ndarray:
    steps = np.linspace(0.0, 1.0, BORDER_ANCHORS_PER_SIDE + 2)
    xs, ys = steps * (width - 1), steps * (height - 1)
    top = np.stack([xs, np.zeros_like(xs)], 1)
    bottom = np.stack([xs, np.full_like(xs, height - 1)], 1)
    left = np.stack([np.zeros_like(ys[1:-1]), ys[1:-1]], 1)
    right = np.stack([np.full_like(ys[1:-1], width - 1), ys[1:-1]], 1)
    return np.concatenate([top, bottom, left, right])


def _hull_ring(points: np.ndarray, margin: float, image_size: tuple[int, int], count: int = 32) -> np.ndarray:
    """`count` points evenly spaced around the convex hull of `points` grown by `margin` about its centre."""
    if len(points) < 3:
        return np.empty((0, 2))
    hull = points[ConvexHull(points, qhull_options="QJ").vertices]
    ring = hull.mean(0) + (hull - hull.mean(0)) * (1.0 + margin)
    closed = np.concatenate([ring, ring[:1]])
    lengths = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    at = np.linspace(0.0, lengths[-1], count, endpoint=False)
    spaced = np.stack([np.interp(at, lengths, closed[:, 0]), np.interp(at, lengths, closed[:, 1])], 1)
    height, width = image_size
    return np.clip(spaced, 0, [width - 1, height - 1])


def _check_points(points: np.ndarray, name: str, count: int | None = None) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or (count is not None and len(points) != count):
        expected = f"[{count}, 2]" if count is not None else "[N, 2]"
        raise ValueError(f"{name} must have shape {expected} (x, y pixels), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return points


class FaceWarper:
    """A piecewise-affine warp of one source image layout (source points + border anchors), reused per frame.

    `inner_lips` = (upper, lower): indices into the points of the upper and lower inner-lip contours, both from
    the same mouth corner to the other. Without it no mouth interior is drawn. `fixed_margin`: a ring of fixed
    anchors around the points (their convex hull grown by this fraction about its centre) keeps the deformation
    on the face, so a dropping jaw does not drag the neck and clothes down to the image border; None leaves only
    the border anchors (for motion of the whole head).
    """

    def __init__(
        self,
        src_points: np.ndarray,
        image_size: tuple[int, int],
        inner_lips: tuple[Sequence[int], Sequence[int]] | None = None,
        fixed_margin: float | None = 0.4,
    ) -> None:
        self.height, self.width = image_size
        self.src_points = _check_points(src_points, "src_points")
        self.num_points = len(self.src_points)
        inside = (self.src_points >= 0).all(1) & (self.src_points <= [self.width - 1, self.height - 1]).all(1)
        if not inside.all():
            raise ValueError(f"src_points {np.flatnonzero(~inside).tolist()} lie outside the {image_size} image")
        anchors = _border_anchors(self.height, self.width)
        if fixed_margin is not None:
            anchors = np.concatenate([_hull_ring(self.src_points, fixed_margin, image_size), anchors])
        self.src_all = np.concatenate([self.src_points, anchors])
        # QJ joggles exactly collinear/duplicate points (a closed mouth puts inner-lip points on top of each
        # other) so that every input point becomes a vertex.
        self.triangles = Delaunay(self.src_all, qhull_options="QJ").simplices.astype(np.int64)  # [F, 3]
        self.inner_lips = None
        if inner_lips is not None:
            upper, lower = (np.asarray(chain, dtype=np.int64) for chain in inner_lips)
            if len(upper) < 2 or len(lower) < 2 or max(upper.max(), lower.max()) >= self.num_points:
                raise ValueError(f"inner_lips must be two chains of >= 2 point indices < {self.num_points}")
            self.inner_lips = (upper, lower)

    def warp(self, image: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
        """Warp `image` (uint8 [H, W, 3], laid out like the source points) so they land on `dst_points`."""
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"image must be uint8 [{self.height}, {self.width}, 3], got {image.dtype} {image.shape}"
            )
        dst = _check_points(dst_points, "dst_points", self.num_points)
        dst_all = np.concatenate([dst, self.src_all[self.num_points :]])
        out = self._piecewise_affine(image, dst_all)
        if self.inner_lips is not None:
            out = self._fill_mouth(out, image, dst)
        return out

    def _piecewise_affine(self, image: np.ndarray, dst_all: np.ndarray) -> np.ndarray:
        moved = np.abs(dst_all - self.src_all).max(1) > 1e-3
        active = moved[self.triangles].any(1)
        out = image.copy()
        if not active.any():
            return out
        tris = self.triangles[active]
        dst_tri, src_tri = dst_all[tris], self.src_all[tris]  # [F, 3, 2]
        # Region to remap: every pixel a moving triangle covers before or after the move.
        corners = np.concatenate([dst_tri.reshape(-1, 2), src_tri.reshape(-1, 2)])
        x0, y0 = np.clip(np.floor(corners.min(0)).astype(int) - 1, 0, None)
        x1 = min(int(np.ceil(corners[:, 0].max())) + 2, self.width)
        y1 = min(int(np.ceil(corners[:, 1].max())) + 2, self.height)

        # Affine map of each triangle from destination to source pixels: src = A @ [x, y, 1].
        dst_h = np.concatenate([dst_tri, np.ones((len(tris), 3, 1))], axis=2)  # [F, 3, 3]
        det = np.linalg.det(dst_h)
        ok = np.abs(det) > 1e-9  # a collapsed destination triangle covers no pixel; its map is never used
        affine = np.zeros((len(tris), 2, 3))
        affine[ok] = np.linalg.solve(dst_h[ok], src_tri[ok]).transpose(0, 2, 1)

        labels = np.full((y1 - y0, x1 - x0), -1, dtype=np.int32)
        scale = 1 << SUBPIXEL_BITS
        for index in np.flatnonzero(ok):
            polygon = np.round((dst_tri[index] - [x0, y0]) * scale).astype(np.int32)
            cv2.fillConvexPoly(labels, polygon, int(index), lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        covered = labels >= 0
        a = affine.astype(np.float32)[labels[covered]]  # [P, 2, 3]
        map_x, map_y = xs.copy(), ys.copy()  # pixels outside every triangle keep the identity map
        map_x[covered] = a[:, 0, 0] * xs[covered] + a[:, 0, 1] * ys[covered] + a[:, 0, 2]
        map_y[covered] = a[:, 1, 0] * xs[covered] + a[:, 1, 1] * ys[covered] + a[:, 1, 2]
        out[y0:y1, x0:x1] = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        return out

    def _fill_mouth(self, warped: np.ndarray, image: np.ndarray, dst: np.ndarray) -> np.ndarray:
        upper, lower = self.inner_lips
        src_up, src_lo = _resample(self.src_points[upper]), _resample(self.src_points[lower])
        dst_up, dst_lo = _resample(dst[upper]), _resample(dst[lower])
        width = np.linalg.norm(dst_up[-1] - dst_up[0]) + 1e-6
        src_gap = _polygon_area(np.concatenate([src_up, src_lo[::-1]])) / width
        polygon = np.concatenate([dst_up, dst_lo[::-1]])
        extra = _polygon_area(polygon) / width - src_gap  # how many pixels further the lips are apart
        if extra <= 0.5:
            return warped
        # Fade the fill in over the first pixels of opening so a barely parted mouth does not flash dark.
        strength = min(1.0, (extra - 0.5) / 2.0)
        x0, y0 = np.clip(np.floor(polygon.min(0)).astype(int) - 3, 0, None)
        x1 = min(int(np.ceil(polygon[:, 0].max())) + 4, self.width)
        y1 = min(int(np.ceil(polygon[:, 1].max())) + 4, self.height)
        size = (y1 - y0, x1 - x0)

        def mask_of(points: np.ndarray) -> np.ndarray:
            mask = np.zeros(size, dtype=np.float32)
            shifted = np.round((points - [x0, y0]) * (1 << SUBPIXEL_BITS)).astype(np.int32)
            cv2.fillPoly(mask, [shifted], 1.0, lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)
            return mask

        mouth = mask_of(polygon)
        layer = np.empty((*size, 3), dtype=np.float32)
        layer[:] = MOUTH_INTERIOR_RGB
        # A closed source mouth has no teeth to show: draw an upper-teeth band a third of the opening deep.
        closed = float(np.clip(1.0 - src_gap / (0.08 * width), 0.0, 1.0))
        if closed > 0:
            teeth = mask_of(np.concatenate([dst_up, (dst_up + [0.0, 0.35 * extra])[::-1]])) * mouth * closed
            layer += teeth[..., None] * (np.array(TEETH_RGB, dtype=np.float32) - MOUTH_INTERIOR_RGB)
        # An open source mouth keeps its own interior: the half under the upper lip moves with the upper lip,
        # the half over the lower lip with the lower lip (a jaw drop), and the new gap between them is dark. Each
        # column of a half shifts as its lip does at that column, so a lip that bends carries its teeth along.
        src_mid = (src_up + src_lo) / 2
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        for lip_src, lip_dst in ((src_up, dst_up), (src_lo, dst_lo)):
            order = np.argsort(lip_dst[:, 0])
            motion = lip_dst - lip_src

            def along(x: np.ndarray, axis: int, order=order, lip_dst=lip_dst, motion=motion) -> np.ndarray:
                return np.interp(x, lip_dst[order, 0], motion[order, axis])

            mid_dst = src_mid + np.stack([along(src_mid[:, 0], 0), along(src_mid[:, 0], 1)], 1)
            part = mask_of(np.concatenate([lip_dst, mid_dst[::-1]]))[..., None]
            if part.any():
                map_x = (xs - along(xs, 0)).astype(np.float32)
                map_y = (ys - along(xs, 1)).astype(np.float32)
                pixels = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                layer = layer * (1 - part) + pixels.astype(np.float32) * part
        alpha = cv2.GaussianBlur(mouth, (0, 0), 0.8)[..., None] * strength
        region = warped[y0:y1, x0:x1].astype(np.float32)
        out = warped.copy()
        out[y0:y1, x0:x1] = np.clip(region * (1 - alpha) + layer * alpha + 0.5, 0, 255).astype(np.uint8)
        return out


def _resample(chain: np.ndarray, count: int = 16) -> np.ndarray:
    """`count` points evenly spaced by arc length along a polyline (so upper and lower lips pair up)."""
    lengths = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(chain, axis=0), axis=1))])
    if lengths[-1] <= 1e-9:
        return np.repeat(chain[:1], count, axis=0)
    at = np.linspace(0.0, lengths[-1], count)
    return np.stack([np.interp(at, lengths, chain[:, 0]), np.interp(at, lengths, chain[:, 1])], 1)


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def warp_face(
    image: np.ndarray,
    src_points: np.ndarray,
    dst_points: np.ndarray,
    inner_lips: tuple[Sequence[int], Sequence[int]] | None = None,
    fixed_margin: float | None = 0.4,
) -> np.ndarray:
    """Warp uint8 `image` [H, W, 3] so that `src_points` [N, 2] (x, y pixels) move to `dst_points` [N, 2].

    `inner_lips` (upper, lower point-index chains, corner to corner) turns on the mouth-interior fill;
    `fixed_margin` sets the ring of fixed anchors around the face (see `FaceWarper`). To warp
    many frames of the same source, build one `FaceWarper` and call `.warp` per frame (saves the triangulation).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    return FaceWarper(src_points, image.shape[:2], inner_lips, fixed_margin).warp(image, dst_points)
