"""The emotion-accuracy formula on hand-made predictions."""

import pytest

from moda_train.core.motion_layout import EMOTIONS, NULL_EMOTION
from moda_train.metrics.emotion import emotion_accuracy

HAPPY, SAD = EMOTIONS.index("happiness"), EMOTIONS.index("sadness")


def test_accuracy_per_class_and_confusion():
    result = emotion_accuracy([HAPPY, HAPPY, HAPPY, SAD, NULL_EMOTION], [HAPPY, HAPPY, SAD, SAD, HAPPY])
    assert result["count"] == 4  # the clip generated without an emotion is left out
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["per_class"]["happiness"] == pytest.approx(2 / 3)
    assert result["per_class"]["sadness"] == 1.0
    assert result["per_class"]["anger"] is None
    assert result["confusion"][HAPPY][SAD] == 1 and result["confusion"][HAPPY][HAPPY] == 2
    assert sum(map(sum, result["confusion"])) == 4


def test_no_target_emotion_and_bad_input():
    assert emotion_accuracy([NULL_EMOTION], [0])["accuracy"] is None
    with pytest.raises(ValueError, match="2 target emotions but 1 predictions"):
        emotion_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="class ids"):
        emotion_accuracy([0], [8])
