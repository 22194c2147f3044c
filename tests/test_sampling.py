"""The samplers (pixel_cnn_pp/model/sampling.py): the cached network equals the full forward
pass at every pixel, the cached sampler returns the naive sampler's images for the same seed,
and the draws are one stateless stream."""
import keras
import numpy as np
import pytest
from keras import ops

from conftest import random_images, small_pixelcnn
from pixel_cnn_pp.model import sampling
from pixel_cnn_pp.model.autoregressive import float_to_images, images_to_float
from pixel_snail.model import PixelSNAIL

CASES = {  # name: (image size, channels, classes, PixelSNAIL)
    "pixelcnn-rgb-8": (8, 3, None, False),
    "pixelcnn-classes-16": (16, 3, 4, False),
    "pixelcnn-gray-12": (12, 1, None, False),
    "snail-rgb-8": (8, 3, None, True),
    "snail-gray-6": (6, 1, None, True),
}


def _model(size, channels=3, num_classes=None, snail=False):
    # Seeded weights: a float-rounding tie in a mixture choice would depend on them, so every
    # run tests the same models.
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


@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_network_equals_the_full_forward_at_every_pixel(case):
    """Teacher forcing: the row and pixel steps, run over a complete image in the sampler's
    loop, give the full network's output at every position (PixelCNN++: every level phase;
    PixelSNAIL: one query against the cached keys and values)."""
    size, channels, num_classes, snail = CASES[case]
    model = _model(size, channels, num_classes, snail)
    x = images_to_float(random_images((3, size, size, channels), seed=2))
    labels = None if num_classes is None else ops.convert_to_tensor(np.array([0, 3, 1]))
    full = ops.convert_to_numpy(model(x, class_label=labels))
    steps = ops.convert_to_numpy(sampling.teacher_forced(model, x, labels))
    np.testing.assert_allclose(steps, full, rtol=1e-4, atol=1e-4 * np.abs(full).max())


def assert_same_images(cached, naive):
    """Continuous samples within 1e-4; uint8 images equal except where a value lies within
    float rounding of a level boundary (then one level off, and rarely)."""
    np.testing.assert_allclose(cached, naive, rtol=0, atol=1e-4)
    a, b = (ops.convert_to_numpy(float_to_images(v)) for v in (cached, naive))
    levels = naive * 127.5 + 127.5
    near_boundary = np.abs(levels - np.floor(levels) - 0.5) < 1e-3
    differ = a != b
    assert not np.any(differ & ~near_boundary), np.argwhere(differ & ~near_boundary)
    assert differ.sum() <= max(2, 1e-3 * differ.size)  # rare: at most 2 in small tests
    assert len(np.unique(a)) > min(20, a.size // 8)  # real samples, not a constant image


@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_sampler_returns_the_naive_images(case):
    size, channels, num_classes, snail = CASES[case]
    model = _model(size, channels, num_classes, snail)
    labels = None if num_classes is None else np.array([1, 3], np.int32)
    cached = ops.convert_to_numpy(sampling.continuous(model, 2, 7, labels, "cached"))
    naive = ops.convert_to_numpy(sampling.continuous(model, 2, 7, labels, "naive"))
    assert_same_images(cached, naive)
    images = model.sample(2, seed=7, class_label=labels)  # cached is the default
    assert images.dtype == np.uint8 and images.shape == (2, size, size, channels)
    np.testing.assert_array_equal(images, ops.convert_to_numpy(float_to_images(cached)))
    assert not np.array_equal(model.sample(2, seed=8, class_label=labels), images)


def test_an_image_does_not_depend_on_the_batch_it_is_drawn_in():
    """The draws are keyed by (seed, image, pixel, draw, element): image 0 of a batch of 3 is
    image 0 of a batch of 1, whatever the batch size."""
    model = _model(8)
    one = ops.convert_to_numpy(sampling.continuous(model, 1, 5))
    three = ops.convert_to_numpy(sampling.continuous(model, 3, 5))
    np.testing.assert_allclose(three[:1], one, atol=1e-5)
    assert not np.allclose(three[1], three[0])


def test_draws_are_uniform_and_keyed_by_seed_and_pixel():
    model = _model(8)
    (u, *_), = [sampling.pixel_uniforms(model, 4000, 3, 5)]
    u = ops.convert_to_numpy(u)
    assert u.shape == tuple(model.distribution.uniform_shapes((4000,))[0])
    assert u.min() >= 1e-5 and u.max() <= 1 - 1e-5
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    # Neighbouring elements, pixels and seeds are uncorrelated streams.
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.08  # 5 sigma
    for other in (sampling.pixel_uniforms(model, 4000, 3, 6)[0],
                  sampling.pixel_uniforms(model, 4000, 4, 5)[0]):
        assert abs(np.corrcoef(u.ravel(), ops.convert_to_numpy(other).ravel())[0, 1]) < 0.045  # 5 sigma
    again = ops.convert_to_numpy(sampling.pixel_uniforms(model, 4000, 3, 5)[0])
    np.testing.assert_array_equal(again, u)


def test_sample_method_is_checked():
    model = _model(8)
    with pytest.raises(ValueError, match="method='slow' is not one of"):
        model.sample(1, method="slow")


JAX_SCRIPT = """
import sys, numpy as np, keras
sys.path.insert(0, 'tests')
assert keras.backend.backend() == 'jax'
from keras import ops
from test_sampling import CASES, _model, assert_same_images
from conftest import random_images
from pixel_cnn_pp.model import sampling
from pixel_cnn_pp.model.autoregressive import images_to_float
for case in ('pixelcnn-classes-8', 'snail-gray-6'):  # each compiles three programs
    size, channels, num_classes, snail = CASES.get(case, (8, 3, 3, False))
    model = _model(size, channels, num_classes, snail)
    labels = None if num_classes is None else np.array([1, 2], np.int32)
    x = images_to_float(random_images((2, size, size, channels), seed=2))
    full = ops.convert_to_numpy(model(x, class_label=labels))
    steps = ops.convert_to_numpy(sampling.teacher_forced(model, x, labels))
    np.testing.assert_allclose(steps, full, rtol=1e-4, atol=1e-4 * np.abs(full).max())
    cached = ops.convert_to_numpy(sampling.continuous(model, 2, 7, labels, 'cached'))
    naive = ops.convert_to_numpy(sampling.continuous(model, 2, 7, labels, 'naive'))
    print(case, 'max difference', np.abs(cached - naive).max(), file=sys.stderr, flush=True)
    assert_same_images(cached, naive)
    print(case, 'ok', file=sys.stderr, flush=True)
print('JAX_OK')
"""


def test_jax_backend_cached_sampler_equals_naive_and_full_forward():
    """The same equalities on the JAX backend (jax.jit of the whole sampler), in a fresh
    process: teacher-forced steps == full forward, cached == naive images."""
    pytest.importorskip("jax", reason="jax is a test extra: pip install -e .[test]")
    from fixture_checks import run_with_jax_backend
    run_with_jax_backend(JAX_SCRIPT)


def test_a_bfloat16_model_samples_in_float32():
    """mixed_bfloat16: the network computes in bfloat16, the draws and the pixel values stay
    float32 (as the loss does). The cached and naive samplers agree only to bfloat16 rounding,
    so a mixture choice can flip: only the images' validity and reproducibility are checked."""
    model = small_pixelcnn(nr_filters=8, dtype="mixed_bfloat16")
    model.initialize(random_images((4, 8, 8, 3), seed=1))
    images = model.sample(2, seed=4)
    assert images.dtype == np.uint8 and images.shape == (2, 8, 8, 3)
    assert len(np.unique(images)) > 20
    np.testing.assert_array_equal(images, model.sample(2, seed=4))
