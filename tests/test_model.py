"""PixelCNN++ model: causality, parameter count, serialization, the Python API, JAX backend."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from pixel_cnn_pp.model.autoregressive import images_to_float
from pixel_cnn_pp.model.pixelcnn import PixelCNNpp
from conftest import random_images, small_pixelcnn


def raster_jacobian_mask(model, image_shape, class_label=None):
    """dep[i, j, k, l] = True iff the output at pixel (i, j) depends on input pixel (k, l).

    One backward pass: copy b of a batch of H*W identical images scores only pixel b, and
    images in a batch do not interact (no dropout, no batch statistics).
    """
    h, w, _ = image_shape
    n = h * w
    x0 = np.random.RandomState(0).uniform(-1, 1, (1, *image_shape)).astype(np.float32)
    x = tf.Variable(np.repeat(x0, n, axis=0))
    labels = None if class_label is None else np.full((n,), class_label)
    with tf.GradientTape() as tape:
        out = model(x, class_label=labels)
        weights = tf.random.stateless_normal(out.shape, (1, 2))
        pick = tf.reshape(tf.one_hot(tf.range(n), n), (n, h, w, 1))
        target = tf.reduce_sum(out * weights * pick)
    grad = tape.gradient(target, x).numpy()
    return (np.abs(grad).sum(axis=-1) > 0).reshape(h, w, h, w)


@pytest.mark.parametrize("channels", [3, 1])
def test_output_depends_only_on_earlier_pixels(channels):
    model = small_pixelcnn(image_shape=(8, 8, channels), nr_filters=8, nr_logistic_mix=2)
    model.initialize(random_images((4, 8, 8, channels)))
    dep = raster_jacobian_mask(model, (8, 8, channels))
    order = np.arange(64).reshape(8, 8)
    for i in range(8):
        for j in range(8):
            later_or_same = order >= order[i, j]
            assert not dep[i, j][later_or_same].any(), f"pixel ({i}, {j}) sees its future"
    # The test can fail: the receptive field covers the previous pixel and the one above.
    assert dep[3, 4, 3, 3] and dep[3, 4, 2, 4] and dep[7, 7, 0, 0]


def test_class_conditional_model_is_causal_and_uses_the_label():
    model = small_pixelcnn(nr_filters=8, nr_logistic_mix=2, num_classes=10)
    images = random_images((4, 8, 8, 3))
    model.initialize(images, class_label=[0, 1, 2, 3])
    dep = raster_jacobian_mask(model, (8, 8, 3), class_label=5)
    order = np.arange(64).reshape(8, 8)
    assert not any(dep[i, j][order >= order[i, j]].any() for i in range(8) for j in range(8))
    a = model.log_likelihood(images, class_label=0)
    b = model.log_likelihood(images, class_label=7)
    assert np.abs(ops.convert_to_numpy(a - b)).max() > 1e-4
    assert len(model.creation_order()) == len(small_pixelcnn(nr_filters=8).creation_order()) + 16


def test_paper_configuration_parameter_count():
    model = PixelCNNpp()  # nr_resnet=5, nr_filters=160, nr_logistic_mix=10, 32x32x3
    model.build_all()
    assert model.count_params() == 53_659_080
    kinds = [layer.tf1_type for layer in model.creation_order()]
    assert (kinds.count("conv2d"), kinds.count("dense"), kinds.count("deconv2d")) == (135, 50, 4)


def test_keras_save_and_load_give_identical_outputs(tmp_path):
    model = small_pixelcnn(nr_filters=8, num_classes=3, dropout_p=0.3)
    images = random_images((2, 8, 8, 3))
    model.initialize(images, class_label=[0, 2])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == model.get_config()
    x = images_to_float(images)
    np.testing.assert_array_equal(ops.convert_to_numpy(model(x, class_label=[1, 2])),
                                  ops.convert_to_numpy(loaded(x, class_label=[1, 2])))


def test_precision_is_a_model_argument_that_survives_a_keras_file(tmp_path):
    """bfloat16 compute reaches every sublayer and comes back from a .keras file, while Keras's
    global policy is never touched; the loss stays float32."""
    model = small_pixelcnn(nr_filters=8, dtype="mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"
    layers = list(model._flatten_layers(include_self=False))
    assert {layer.dtype_policy.name for layer in layers} == {"mixed_bfloat16"}
    assert {v.dtype for v in model.weights if v.trainable} == {"float32"}
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert {layer.dtype_policy.name for layer in loaded._flatten_layers()} == {"mixed_bfloat16"}
    assert loaded.nll(images_to_float(random_images((2, 8, 8, 3)))).dtype == "float32"


def test_every_layer_round_trips_its_config():
    model = small_pixelcnn(nr_filters=8, num_classes=3)
    for layer in model._flatten_layers(include_self=False):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config(), layer.name


def test_bits_per_dim_and_log_likelihood_agree():
    model = small_pixelcnn(nr_filters=8)
    images = random_images((3, 8, 8, 3))
    model.initialize(images)
    ll = ops.convert_to_numpy(model.log_likelihood(images))
    bpd = ops.convert_to_numpy(model.bits_per_dim(images))
    assert ll.shape == bpd.shape == (3,)
    np.testing.assert_allclose(bpd, -ll / (np.log(2) * 192), rtol=1e-6)
    assert np.all(bpd > 0)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
    (np.zeros((2, 8, 4, 3), np.uint8), r"shape \(2, 8, 4, 3\)"),
])
def test_api_rejects_bad_images(bad, match):
    with pytest.raises(ValueError, match=match):
        small_pixelcnn(nr_filters=8).bits_per_dim(bad)


def test_api_rejects_bad_labels_and_shapes():
    model = small_pixelcnn(nr_filters=8, num_classes=4)
    images = random_images((2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"class_label must be in \[0, 4\)"):
        model.bits_per_dim(images, class_label=[0, 4])
    with pytest.raises(ValueError, match="pass class_label"):
        model.bits_per_dim(images)
    with pytest.raises(ValueError, match="divisible by 4"):
        PixelCNNpp(image_shape=(10, 8, 3))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        PixelCNNpp(image_shape=(8, 8, 2))
    with pytest.raises(ValueError, match="num_samples"):
        model.sample(0)


def test_sampling_is_reproducible_and_seed_dependent():
    model = small_pixelcnn(image_shape=(4, 4, 3), nr_filters=8, nr_logistic_mix=2)
    model.initialize(random_images((4, 4, 4, 3)))
    a = model.sample(3, seed=7)
    b = model.sample(3, seed=7)
    c = model.sample(3, seed=8)
    assert a.shape == (3, 4, 4, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
