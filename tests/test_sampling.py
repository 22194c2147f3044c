"""The samplers (pixel_cnn_pp/model/sampling.py): the cached network equals the full forward
pass at every pixel, the cached sampler returns the naive sampler's images for the same seed,
and the draws are one stateless stream."""
import functools

import numpy as np
import pytest
from keras import ops

from conftest import random_images, small_pixelcnn
from models import SAMPLING_CASES, assert_same_images, sampling_model
from pixel_cnn_pp.model import sampling
from pixel_cnn_pp.model.autoregressive import float_to_images, images_to_float
from pixel_snail.model import PixelSNAIL

# One model per case for the whole file: the samplers compiled for it are kept with it, so the
# tests of a case trace each program once.
case_model = functools.lru_cache(maxsize=None)(sampling_model)


@pytest.mark.parametrize("case", sorted(SAMPLING_CASES))
def test_cached_network_equals_the_full_forward_at_every_pixel(case):
    """Teacher forcing: the row and pixel steps, run over a complete image in the sampler's
    loop, give the full network's output at every position (PixelCNN++: every level phase;
    PixelSNAIL: one query against the cached keys and values)."""
    size, channels, num_classes, snail = SAMPLING_CASES[case]
    model = case_model(size, channels, num_classes, snail)
    x = images_to_float(random_images((3, size, size, channels), seed=2))
    labels = None if num_classes is None else ops.convert_to_tensor(np.array([0, 3, 1]))
    full = ops.convert_to_numpy(model(x, class_label=labels))
    steps = ops.convert_to_numpy(sampling.teacher_forced(model, x, labels))
    np.testing.assert_allclose(steps, full, rtol=1e-4, atol=1e-4 * np.abs(full).max())


def test_pixel_steps_products_in_column_halves_equal_the_full_forward(monkeypatch):
    """A pixel step makes a product wider than `steps.HALVES_ABOVE` columns (the paper
    configuration's gate convolutions) as two halves; here every product is halved."""
    monkeypatch.setattr("pixel_cnn_pp.model.steps.HALVES_ABOVE", 0)
    model = sampling_model(8)  # a model of its own: its programs are traced with the halves
    halved = [k for k in sampling.kernels(model).values() if isinstance(k, tuple) and len(k) == 2]
    assert len(halved) >= 4  # both convolutions of every gated resnet
    x = images_to_float(random_images((2, 8, 8, 3), seed=4))
    full = ops.convert_to_numpy(model(x))
    steps_out = ops.convert_to_numpy(sampling.teacher_forced(model, x))
    np.testing.assert_allclose(steps_out, full, rtol=1e-4, atol=1e-4 * np.abs(full).max())


@pytest.mark.parametrize("case", sorted(SAMPLING_CASES))
def test_cached_sampler_returns_the_naive_images(case):
    size, channels, num_classes, snail = SAMPLING_CASES[case]
    model = case_model(size, channels, num_classes, snail)
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
    model = case_model(8, 3, None, False)
    one = ops.convert_to_numpy(sampling.continuous(model, 1, 5))
    three = ops.convert_to_numpy(sampling.continuous(model, 3, 5))
    np.testing.assert_allclose(three[:1], one, atol=1e-5)
    assert not np.allclose(three[1], three[0])


def test_draws_are_uniform_and_keyed_by_seed_and_pixel():
    model = case_model(8, 3, None, False)
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


def test_pixel_loop_iterations_run_a_levels_period_of_steps():
    """An iteration of the pixel loop runs `unrolled` steps, whose level conditionals are
    settled while tracing; the equality tests above run groups (widths 8, 12 and 16, three
    levels: a period of 4 columns) and single steps (PixelSNAIL at width 6)."""
    def layout(deepest):
        return {"levels": {"a": 0, "b": deepest}}

    assert sampling.unrolled(layout(2), 12) == 4  # the period; UNROLL, if more, does not divide
    assert sampling.unrolled(layout(2), 16) == max(4, sampling.UNROLL)
    assert sampling.unrolled(layout(1), 6) == 2
    assert sampling.unrolled(layout(0), 6) == (sampling.UNROLL if 6 % sampling.UNROLL == 0 else 1)
    assert sampling.unrolled(layout(0), 7) == 1


def test_sample_method_is_checked():
    model = case_model(8, 3, None, False)
    with pytest.raises(ValueError, match="method='slow' is not one of"):
        model.sample(1, method="slow")


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


@pytest.mark.parametrize("case", ["pixelcnn-classes-16", "snail-gray-6"])
def test_completing_a_rounded_samples_prefix_returns_that_sample(case):
    """`complete` keeps the known pixels and draws the others with `sample`'s draws, feeding
    drawn pixels back at their levels: the top rows of `sample(rounded=True)` complete to it,
    nothing known gives it too, and another seed keeps the prefix and draws another rest."""
    size, channels, num_classes, snail = SAMPLING_CASES[case]
    model = case_model(size, channels, num_classes, snail)
    labels = None if num_classes is None else np.array([1, 3], np.int32)
    drawn = model.sample(2, seed=7, class_label=labels, rounded=True)
    known = np.zeros((size, size), bool)
    known[:size // 2] = True
    np.testing.assert_array_equal(model.complete(drawn, known, seed=7, class_label=labels), drawn)
    np.testing.assert_array_equal(
        model.complete(drawn, np.zeros_like(known), seed=7, class_label=labels), drawn)
    other = model.complete(drawn, known, seed=8, class_label=labels)
    np.testing.assert_array_equal(other[:, :size // 2], drawn[:, :size // 2])
    assert (other[:, size // 2:] != drawn[:, size // 2:]).mean() > 0.3
    # Continuous feedback (the original's) conditions later pixels on off-grid values.
    assert not np.array_equal(model.sample(2, seed=7, class_label=labels), drawn)


def test_completion_keeps_every_known_pixel_of_any_mask_and_checks_its_inputs():
    model = case_model(8, 3, None, False)
    images = random_images((3, 8, 8, 3), seed=9)
    known = np.random.RandomState(0).rand(3, 8, 8) < 0.5
    done = model.complete(images, known, seed=1)
    np.testing.assert_array_equal(done[known], images[known])
    assert (done[~known] != images[~known]).mean() > 0.5
    with pytest.raises(ValueError, match="known must be a boolean mask, got dtype int64"):
        model.complete(images, known.astype(np.int64))
    with pytest.raises(ValueError, match=r"known has shape \(8, 4\); expected \(8, 8\) or "
                                         r"\(3, 8, 8\)"):
        model.complete(images, known[0, :, :4])


def test_a_binary_models_samples_complete_without_rounding():
    """Bernoulli draws are levels already: `sample`'s default images complete to themselves."""
    model = PixelSNAIL(image_shape=(6, 6, 1), nr_resnet=1, nr_filters=8, attn_rep=1,
                       key_size=4, dropout_p=0.0, output="bernoulli")
    model.build_all()
    model.initialize(random_images((8, 6, 6, 1), seed=1) // 128 * 255)
    drawn = model.sample(3, seed=2)
    known = np.zeros((6, 6), bool)
    known[:2] = True
    np.testing.assert_array_equal(model.complete(drawn, known, seed=2), drawn)
