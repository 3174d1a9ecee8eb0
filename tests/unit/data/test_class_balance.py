"""Class balance for training: the minimum images per class, empty validation classes, class
weights and balanced accuracy (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgetl.core.config import MIN_IMAGES_PER_CLASS, DataConfig
from edgetl.core.errors import DataError
from edgetl.data.folder import STRICT_MIN_IMAGES
from edgetl.data.split import (
    ImageData,
    SplitData,
    balanced_accuracy,
    balanced_class_weights,
    check_class_counts,
    class_counts,
    imbalance,
)


def _split(train: dict[str, int], val: dict[str, int]) -> SplitData:
    names = sorted(set(train) | set(val))

    def images(counts: dict[str, int]) -> ImageData:
        y = np.concatenate([np.full(counts.get(n, 0), i, np.int64) for i, n in enumerate(names)])
        return ImageData(np.zeros((len(y), 4, 4, 3), np.uint8), y, [Path(f"{i}.png") for i in range(len(y))])

    return SplitData(images(train), images(val), names, [])


def test_training_minimum_is_the_strict_check_minimum():
    assert DataConfig().min_images == MIN_IMAGES_PER_CLASS == STRICT_MIN_IMAGES


def test_a_wrong_data_folder_is_refused_naming_class_count_minimum_and_override():
    """`--data edgetl-demo` instead of `edgetl-demo/data`: class 'build' with one image against 1,000."""
    split = _split({"build": 1, "data": 800}, {"build": 0, "data": 200})
    with pytest.raises(DataError) as info:
        check_class_counts(split, DataConfig(path=Path("edgetl-demo")))
    message = str(info.value)
    assert "'build' has 1 image," in message and "minimum of 10" in message
    assert "edgetl-demo is the folder whose subfolders are the classes" in message
    assert "min_images=1" in message and "[data] min_images" in message and "\n" not in message


def test_every_small_class_is_named_smallest_first():
    split = _split({"a": 6, "b": 2, "c": 40}, {"a": 2, "b": 1, "c": 10})
    with pytest.raises(DataError, match=r"'b' has 3 images, .*also under it: 'a' 8"):
        check_class_counts(split, DataConfig(path=Path("d")))


def test_the_minimum_can_be_lowered_and_an_empty_validation_class_is_still_refused():
    ok = _split({"a": 3, "b": 3}, {"a": 1, "b": 1})
    with pytest.raises(DataError, match="under the minimum of 10"):
        check_class_counts(ok, DataConfig(path=Path("d")))
    check_class_counts(ok, DataConfig(path=Path("d"), min_images=4))  # passes

    no_val = _split({"a": 1, "b": 5}, {"a": 0, "b": 1})  # what a one-image class gets from the split
    with pytest.raises(DataError) as info:
        check_class_counts(no_val, DataConfig(path=Path("d"), min_images=1))
    message = str(info.value)
    assert "'a' has no validation images (1 image in all, all on the other side of the split)" in message
    assert "--val DIR" in message and "\n" not in message

    no_train = _split({"a": 0, "b": 5}, {"a": 2, "b": 1})
    with pytest.raises(DataError, match="'a' has no training images"):
        check_class_counts(no_train, DataConfig(path=Path("d"), min_images=1))


def test_min_images_is_checked_when_the_config_is_read():
    from edgetl.core.config import validate
    from edgetl.core.errors import ConfigError

    assert validate({"data": {"min_images": 1}}, "t").data.min_images == 1
    with pytest.raises(ConfigError, match="data.min_images"):
        validate({"data": {"min_images": 0}}, "t")


def test_balanced_class_weights_are_inverse_frequency():
    labels = [0] * 90 + [1] * 10
    weights = balanced_class_weights(labels, 2)
    assert weights == pytest.approx([100 / (2 * 90), 100 / (2 * 10)])
    # each class then weighs the same in total, and the mean weight per image is 1
    assert 90 * weights[0] == pytest.approx(10 * weights[1]) == pytest.approx(50)
    assert balanced_class_weights([0, 0, 1, 1, 2, 2], 3) == pytest.approx([1.0, 1.0, 1.0])
    assert balanced_class_weights([0, 0, 2], 3) == pytest.approx([0.75, 1.0, 1.5]), "an absent class gets 1.0"


def test_balanced_accuracy_is_the_mean_per_class_recall():
    labels = np.array([0] * 90 + [1] * 10)
    always_big = np.zeros(100, np.int64)
    assert float(np.mean(always_big == labels)) == 0.9
    assert balanced_accuracy(labels, always_big) == pytest.approx(0.5)
    predicted = always_big.copy()
    predicted[-5:] = 1
    assert balanced_accuracy(labels, predicted) == pytest.approx((1.0 + 0.5) / 2)
    assert np.isnan(balanced_accuracy([], []))


def test_counts_and_imbalance():
    assert class_counts([0, 0, 2], 4) == [2, 0, 1, 0]
    assert imbalance([100, 10]) == 10.0 and imbalance([5, 0]) == float("inf") and imbalance([]) == 1.0
