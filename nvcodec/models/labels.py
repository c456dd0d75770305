"""Label lists: ImageNet-1k class names and COCO detection labels as DETR numbers them."""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources

from nvcodec.errors import FormatError, UsageError

NO_LABEL = "N/A"
MAX_LABELS = 100_000
MAX_LABEL_CHARS = 300
MAX_LABEL_FILE_BYTES = 8 << 20

COCO_ID2LABEL: dict[int, str] = {
    0: NO_LABEL, 1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus",
    7: "train", 8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 12: NO_LABEL,
    13: "stop sign", 14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse",
    20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 26: NO_LABEL,
    27: "backpack", 28: "umbrella", 29: NO_LABEL, 30: NO_LABEL, 31: "handbag", 32: "tie",
    33: "suitcase", 34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite",
    39: "baseball bat", 40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket",
    44: "bottle", 45: NO_LABEL, 46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon",
    51: "bowl", 52: "banana", 53: "apple", 54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot",
    58: "hot dog", 59: "pizza", 60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant",
    65: "bed", 66: NO_LABEL, 67: "dining table", 68: NO_LABEL, 69: NO_LABEL, 70: "toilet", 71: NO_LABEL,
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 83: NO_LABEL, 84: "book", 85: "clock",
    86: "vase", 87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}  # fmt: skip
"""COCO category ids as used by DETR's ``id2label`` (91 ids; unused ids are "N/A")."""


def _label_file(name: str, count: int) -> tuple[str, ...]:
    text = resources.files("nvcodec.models").joinpath(name).read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != count:
        raise FormatError(f"{name} holds {len(names)} names, expected {count}")
    return names


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard index order (0 = "tench")."""
    return _label_file("imagenet_classes.txt", 1000)


@lru_cache(maxsize=1)
def kinetics400_classes() -> tuple[str, ...]:
    """The 400 Kinetics-400 action names in the standard index order (sorted; 0 = "abseiling").

    The class list is published with the Kinetics dataset (DeepMind, annotations CC BY 4.0).
    """
    return _label_file("kinetics400_classes.txt", 400)


def coco_labels() -> tuple[str, ...]:
    """COCO labels indexed by DETR class id (91 entries, index 0 = "N/A")."""
    return tuple(COCO_ID2LABEL[i] for i in range(len(COCO_ID2LABEL)))


def label_name(labels: tuple[str, ...] | list[str], index: int) -> str:
    """Name of class `index`, or ``"class_{index}"`` when the list does not cover it."""
    return labels[index] if 0 <= index < len(labels) else f"class_{index}"


def read_labels(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Labels of a zero-shot label file: UTF-8 text, one label per line, blank lines skipped.

    UsageError when the file cannot be read, is larger than 8 MiB, or holds no label, more than
    `MAX_LABELS` labels or a label longer than `MAX_LABEL_CHARS` characters.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LABEL_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read label file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_LABEL_FILE_BYTES:
        raise UsageError(f"label file {path} is larger than {MAX_LABEL_FILE_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"label file {path} is not UTF-8 text") from None
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not labels:
        raise UsageError(f"label file {path} holds no label")
    if len(labels) > MAX_LABELS:
        raise UsageError(f"label file {path} holds {len(labels)} labels, at most {MAX_LABELS} are allowed")
    long = next((i for i, label in enumerate(labels) if len(label) > MAX_LABEL_CHARS), None)
    if long is not None:
        raise UsageError(f"label {long + 1} of {path} is longer than {MAX_LABEL_CHARS} characters")
    return labels
