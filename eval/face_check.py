"""Are a model's samples faces? A check that owes nothing to this suite: OpenCV's frontal-face detector (the
Viola-Jones cascade of Haar features that ships with opencv-python-headless, trained on photographs long before
this suite existed) run on every image at its own resolution.

A set's face rate is the fraction of its images in which the detector finds at least one face as large as
`min_face` of the image side; `face_ratio` divides a sample set's rate by the test split's, so 1.0 means "faces as
often as in real test images" whatever the detector misses on real faces (turned heads, glasses). It sees the
layout of a face in grey levels (eyes darker than cheeks, a bridge of the nose), not colour, detail or variety: an
image of the mean face is a face to it, and a set of one face repeated scores as that face does. Variety and detail
are what sample recall and the Frechet distance measure (eval/sample_quality.py); this check answers the question
they cannot, whether a sample shows a face at all.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CASCADE = "haarcascade_frontalface_default.xml"  # OpenCV's frontal-face cascade (Lienhart and Maydt's training)


@functools.cache
def _detector() -> Any:
    """OpenCV's frontal-face cascade, loaded once per process from the file opencv-python-headless installs."""
    import cv2  # imported here: only this check needs OpenCV

    path = Path(cv2.data.haarcascades) / CASCADE
    detector = cv2.CascadeClassifier(str(path))
    if detector.empty():
        raise RuntimeError(f"OpenCV could not load its face detector {path}: reinstall opencv-python-headless "
                           "(`make setup`; release 4.x, whose wheels ship the cascades)")
    return detector


def faces_found(images: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    """(N,) bool: whether the detector finds a face in each uint8 image (N, 3, H, W).

    settings: params eval.face_check ({scale_factor, min_neighbors, min_face}).
    """
    import cv2

    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"face check: expected uint8 images (N, 3, H, W), got {images.dtype} {images.shape}; "
                         "pass the samples.npy / test.npy arrays as the pipeline writes them")
    side = min(images.shape[-2:])
    smallest = max(1, round(settings["min_face"] * side))
    detector = _detector()
    found = np.zeros(len(images), dtype=bool)
    for index, image in enumerate(images):
        grey = cv2.cvtColor(np.ascontiguousarray(image.transpose(1, 2, 0)), cv2.COLOR_RGB2GRAY)  # (H, W)
        boxes = detector.detectMultiScale(grey, scaleFactor=settings["scale_factor"],
                                          minNeighbors=settings["min_neighbors"], minSize=(smallest, smallest))
        found[index] = len(boxes) > 0
    return found


def face_rate(images: np.ndarray, settings: Mapping[str, Any]) -> float:
    """The fraction of images in which the detector finds a face."""
    if len(images) == 0:
        raise ValueError("face check: no images to check")
    return float(faces_found(images, settings).mean())


def face_rate_of_test_split(test_images: np.ndarray, settings: Mapping[str, Any]) -> float:
    """The test split's face rate, the denominator of every ratio: refused where it is zero."""
    rate = face_rate(test_images, settings)
    if rate == 0:
        raise ValueError("face check: the detector finds no face in the test split, so no ratio can be formed; "
                         "this data set has no frontal faces at the check's min_face (params eval.face_check)")
    return rate


def face_summary(sample_sets: Mapping[str, np.ndarray], test_rate: float,
                 settings: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of results/eval/{res}/face_check/{model}.json: the test split's face rate `test_rate`
    (`face_rate_of_test_split`) and, per sample set (key prefix "" for the N(0, I) prior's samples, "fitted_" for
    the fitted prior's), its face rate and its ratio to the test split's."""
    summary = {"test_face_rate": test_rate}
    for prefix, samples in sample_sets.items():
        rate = face_rate(samples, settings)
        summary[f"{prefix}face_rate"] = rate
        summary[f"{prefix}face_ratio"] = rate / test_rate
    return summary
