"""Class sets: the Cityscapes mapping and config-described class lists."""

import numpy as np
import pytest

from autolabel.classes import CITYSCAPES, class_set_from_config, custom_class_set
from autolabel.config import ClassesConfig
from autolabel.errors import ConfigError

# labelId -> trainId of Cityscapes' 19 evaluation classes, from the dataset's documentation
CITYSCAPES_IDS = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}


def test_cityscapes_label_to_train_ids():
    lut = CITYSCAPES.label_to_train_lut()
    for label_id in range(256):
        assert lut[label_id] == CITYSCAPES_IDS.get(label_id, 255)


def test_cityscapes_train_to_label_is_the_inverse():
    back = CITYSCAPES.train_to_label_lut()
    for label_id, train_id in CITYSCAPES_IDS.items():
        assert back[train_id] == label_id
    assert back[255] == 0


def test_cityscapes_names_and_colours():
    assert CITYSCAPES.num_classes == 19
    assert CITYSCAPES.index("car") == 13 and CITYSCAPES.colors[0] == (128, 64, 128)
    assert len(set(CITYSCAPES.colors)) == 19
    with pytest.raises(ConfigError, match="unknown class 'cat'"):
        CITYSCAPES.index("cat")


def test_custom_class_set_from_config():
    cfg = ClassesConfig(preset="custom", names=("bg", "tumour"), colors=("#000000", "#ff0000"), label_ids=(0, 200))
    cs = class_set_from_config(cfg)
    assert cs.colors[1] == (255, 0, 0)
    label = np.array([[0, 200, 7]], dtype=np.uint8)
    assert cs.label_to_train_lut()[label].tolist() == [[0, 1, 255]]
    assert cs.palette().shape == (256, 3)


def test_custom_class_set_generates_distinct_colours_and_rejects_bad_input():
    cs = custom_class_set(tuple(f"c{i}" for i in range(30)))
    assert len(set(cs.colors)) == 30
    with pytest.raises(ConfigError, match="unique"):
        custom_class_set(("a", "a"))
    with pytest.raises(ConfigError, match="colors"):
        custom_class_set(("a",), colors=("red",))
    with pytest.raises(ConfigError, match="ignore"):
        custom_class_set(("a",), label_ids=(255,))
