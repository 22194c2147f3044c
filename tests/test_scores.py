"""Per-pixel and per-sub-pixel log-likelihoods (`log_likelihood(reduce=...)`): the reductions
agree, the sub-pixel terms are the mixture's chain rule (each normalised over its levels, by
enumeration), and every pixel's term is causal."""
import keras
import numpy as np
import pytest
from keras import ops

from conftest import random_images, small_pixelcnn
from pixel_cnn_pp.model.autoregressive import images_to_float
from pixel_snail.model import PixelSNAIL

CASES = ("rgb", "gray", "classes", "snail-bernoulli")


def make(case):
    """An initialised small model of `case` and its class labels for 4 images (or None);
    seeded weights, so that every run tests the same models."""
    keras.utils.set_random_seed(CASES.index(case) + 1)
    if case == "snail-bernoulli":
        model = PixelSNAIL(image_shape=(6, 6, 1), nr_resnet=1, nr_filters=8, attn_rep=1,
                           key_size=4, dropout_p=0.0, output="bernoulli")
        model.build_all()
        model.initialize(random_images((8, 6, 6, 1), seed=1) // 128 * 255)
        return model, None
    shape = (8, 8, 1) if case == "gray" else (8, 8, 3)
    num_classes = 3 if case == "classes" else None
    model = small_pixelcnn(image_shape=shape, num_classes=num_classes, nr_filters=8)
    labels = None if num_classes is None else np.arange(8) % 3
    model.initialize(random_images((8,) + shape, seed=1), class_label=labels)
    return model, (None if labels is None else labels[:4])


def images_for(model, count, seed):
    images = random_images((count,) + model.image_shape, seed=seed)
    return images // 128 * 255 if model.distribution.binary else images


@pytest.mark.parametrize("case", CASES)
def test_the_three_reductions_agree_and_the_image_term_is_the_loss(case):
    model, labels = make(case)
    images = images_for(model, 4, seed=2)
    image = np.asarray(model.log_likelihood(images, labels))
    pixel = np.asarray(model.log_likelihood(images, labels, reduce="pixel"))
    subpixel = np.asarray(model.log_likelihood(images, labels, reduce="subpixel"))
    assert image.shape == (4,) and pixel.shape == (4, *model.image_shape[:2])
    assert subpixel.shape == (4, *model.image_shape)
    loss = -ops.convert_to_numpy(model.nll(images_to_float(images), labels))
    np.testing.assert_array_equal(image, loss)  # today's arithmetic, bit for bit
    np.testing.assert_allclose(pixel.sum(axis=(1, 2)), image, rtol=1e-4)
    np.testing.assert_allclose(subpixel.sum(axis=-1), pixel, rtol=1e-4, atol=1e-5)
    bpd = np.asarray(model.bits_per_dim(images, labels))
    for reduce in ("pixel", "subpixel"):
        per = np.asarray(model.bits_per_dim(images, labels, reduce=reduce))
        np.testing.assert_allclose(per.reshape(4, -1).mean(axis=1), bpd, rtol=1e-4)
    with pytest.raises(ValueError, match="reduce='row' is not one of image, pixel, subpixel"):
        model.log_likelihood(images, labels, reduce="row")


def enumerate_subpixel(model, image, i, j, c, levels, labels=None):
    """The sub-pixel terms of `image` with channel c of pixel (i, j) set to each of `levels`:
    (len(levels), C) terms of that pixel."""
    batch = np.repeat(image[None], len(levels), axis=0)
    batch[:, i, j, c] = levels
    if labels is not None:
        labels = np.full(len(levels), labels, np.int32)
    return np.asarray(model.log_likelihood(batch, labels, reduce="subpixel"))[:, i, j]


@pytest.mark.parametrize("case", ["rgb", "classes"])
def test_subpixel_terms_are_the_chain_rule_normalised_over_256_levels(case):
    """At a pixel, with every other sub-pixel fixed: exp(log p(R)) sums to 1 over R's 256
    levels, p(G | R) over G's for that R, p(B | R, G) over B's; and a channel's term does not
    change with the later channels (a chain rule, not a split of the pixel's total)."""
    model, labels = make(case)
    image = random_images(model.image_shape, seed=3)
    label = None if labels is None else 2
    for i, j in ((0, 0), (3, 5), (7, 7)):
        for c in range(3):
            terms = enumerate_subpixel(model, image, i, j, c, np.arange(256), label)
            total = np.logaddexp.reduce(terms[:, c].astype(np.float64))
            assert abs(total) < 2e-3, (i, j, c, total)
            earlier = terms[:, :c]
            np.testing.assert_allclose(earlier, np.broadcast_to(earlier[:1], earlier.shape),
                                       atol=1e-5)  # R's term ignores G and B, G's ignores B
            if c < 2:
                assert np.ptp(terms[:, c + 1]) > 1e-2  # later channels are conditioned on it


@pytest.mark.parametrize("case", ["gray", "snail-bernoulli"])
def test_single_channel_pixels_are_normalised(case):
    model, _ = make(case)
    image = images_for(model, 1, seed=4)[0]
    levels = np.array([0, 255]) if model.distribution.binary else np.arange(256)
    for i, j in ((0, 0), (2, 3), (5, 5)):
        terms = enumerate_subpixel(model, image, i, j, 0, levels)
        pixel = np.asarray(model.log_likelihood(np.asarray(image)[None], reduce="pixel"))
        assert abs(np.logaddexp.reduce(terms[:, 0].astype(np.float64))) < 2e-3
        assert pixel.shape == (1, *model.image_shape[:2])


@pytest.mark.parametrize("case", CASES)
def test_a_pixels_term_depends_on_no_later_pixel(case):
    """Changing pixel (i, j) leaves the terms of every pixel before it in raster order
    unchanged; its own term and later ones change."""
    model, labels = make(case)
    height, width, _ = model.image_shape
    images = images_for(model, 4, seed=5)
    base = np.asarray(model.log_likelihood(images, labels, reduce="pixel")).reshape(4, -1)
    for i, j in ((0, 0), (2, 3), (height - 1, width - 2)):
        changed = images.copy()
        changed[:, i, j] = 255 - changed[:, i, j]
        after = np.asarray(model.log_likelihood(changed, labels, reduce="pixel")).reshape(4, -1)
        k = i * width + j
        np.testing.assert_allclose(after[:, :k], base[:, :k], rtol=0, atol=1e-5)
        assert np.abs(after[:, k:] - base[:, k:]).max() > 1e-3
