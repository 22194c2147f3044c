"""Test models and data without TensorFlow (the JAX-backend process imports them too): the
original's fixtures, the smallest models of each kind, random images, the sampler cases."""
import json
import pathlib

import keras
import numpy as np
from keras import ops

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load_fixture(name):
    with np.load(FIXTURES / f"{name}.npz") as data:
        out = {k: data[k] for k in data.files}
    if "meta_json" in out:
        out["meta"] = json.loads(str(out["meta_json"]))
    return out


def small_pixelcnn(**overrides):
    """A tiny PixelCNN++ for fast tests (the fixture's configuration by default)."""
    from pixel_cnn_pp.model.pixelcnn import PixelCNNpp
    config = dict(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=16, nr_logistic_mix=3,
                  dropout_p=0.0)
    config.update(overrides)
    model = PixelCNNpp(**config)
    model.build_all()
    return model


def random_images(shape, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=shape).astype("uint8")


SAMPLING_CASES = {  # name: (image size, channels, classes, PixelSNAIL)
    "pixelcnn-rgb-8": (8, 3, None, False),
    "pixelcnn-classes-16": (16, 3, 4, False),
    "pixelcnn-gray-12": (12, 1, None, False),
    "snail-rgb-8": (8, 3, None, True),
    "snail-gray-6": (6, 1, None, True),
}


def sampling_model(size, channels=3, num_classes=None, snail=False):
    """An initialised model of a sampler case. Seeded weights: a float-rounding tie in a
    mixture choice would depend on them, so every run tests the same models."""
    from pixel_snail.model import PixelSNAIL
    keras.utils.set_random_seed(size * 10 + channels)
    if snail:
        model = PixelSNAIL(image_shape=(size, size, channels), nr_resnet=1, nr_filters=8,
                           nr_logistic_mix=2, dropout_p=0.0, attn_rep=2, key_size=4)
        model.build_all()
    else:
        model = small_pixelcnn(image_shape=(size, size, channels), num_classes=num_classes,
                               nr_filters=8)
    labels = None if num_classes is None else np.arange(8) % num_classes
    model.initialize(random_images((8, size, size, channels), seed=1), class_label=labels)
    return model


def assert_same_images(cached, naive):
    """Continuous samples within 1e-4; uint8 images equal except where a value lies within
    float rounding of a level boundary (then one level off, and rarely)."""
    from pixel_cnn_pp.model.autoregressive import float_to_images
    np.testing.assert_allclose(cached, naive, rtol=0, atol=1e-4)
    a, b = (ops.convert_to_numpy(float_to_images(v)) for v in (cached, naive))
    levels = naive * 127.5 + 127.5
    near_boundary = np.abs(levels - np.floor(levels) - 0.5) < 1e-3
    differ = a != b
    assert not np.any(differ & ~near_boundary), np.argwhere(differ & ~near_boundary)
    assert differ.sum() <= max(2, 1e-3 * differ.size)  # rare: at most 2 in small tests
    assert len(np.unique(a)) > min(20, a.size // 8)  # real samples, not a constant image


def assert_same_levels(a, b):
    """uint8 images of two graphs of the same computation (say an export's and the API's):
    equal, except rarely one level where a value lay within float rounding of a level boundary
    (the graphs' kernels may add in different orders; the draws that follow stay the same)."""
    differ = np.abs(a.astype(int) - b.astype(int))
    assert differ.max() <= 1 and (differ > 0).sum() <= max(1, 1e-3 * a.size), np.argwhere(differ)


def code_prior(snail, num_codes=3, size=2, condition=None, num_classes=None, seed=0, **options):
    """An initialised categorical model over `size` x `size` code maps of `num_codes` codes,
    with a condition ("codes": a (2, 2) map of 3 codes; "features": (2, 2, 4) floats) and
    classes as asked; returns (model, its init batch {codes, condition, class_label})."""
    from pixel_cnn_pp.model.pixelcnn import PixelCNNpp
    from pixel_snail.model import PixelSNAIL
    keras.utils.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    extra = {"codes": dict(condition_shape=(2, 2), condition_codes=3),
             "features": dict(condition_shape=(2, 2, 4)), None: {}}[condition]
    common = dict(image_shape=(size, size), output="categorical", num_codes=num_codes,
                  nr_resnet=1, nr_filters=8, dropout_p=0.0, num_classes=num_classes, **extra)
    if snail:
        model = PixelSNAIL(attn_rep=2, key_size=4, **common, **options)
    else:
        model = PixelCNNpp(**common, **options)
    batch = {"codes": rng.randint(0, num_codes, (8, size, size)).astype("int32")}
    if condition == "codes":
        batch["condition"] = rng.randint(0, 3, (8, 2, 2)).astype("int32")
    elif condition == "features":
        batch["condition"] = rng.randn(8, 2, 2, 4).astype("float32")
    if num_classes:
        batch["class_label"] = np.arange(8) % num_classes
    model.initialize(batch["codes"], class_label=batch.get("class_label"),
                     condition=batch.get("condition"))
    return model, batch
