"""Layer-level behaviour: shifts, weight normalisation, data-dependent init, shifted convs."""
import numpy as np
import pytest
from keras import ops

from pixel_cnn_pp.model.gated_resnet import GatedResnet
from pixel_cnn_pp.model.ops import NONLINEARITIES, concat_elu, down_shift, right_shift
from pixel_cnn_pp.model.passes import FULL, INIT
from pixel_cnn_pp.model.shifted import (DownRightShiftedConv2D, DownRightShiftedConv2DTranspose,
                                        DownShiftedConv2D, DownShiftedConv2DTranspose)
from pixel_cnn_pp.model.weight_norm import Nin, WNConv2D, WNConv2DTranspose, WNDense
from conftest import small_pixelcnn, random_images


def test_shifts_move_rows_and_columns():
    x = np.arange(2 * 3 * 4 * 1, dtype=np.float32).reshape(2, 3, 4, 1)
    d = ops.convert_to_numpy(down_shift(x))
    r = ops.convert_to_numpy(right_shift(x))
    np.testing.assert_array_equal(d[:, 0], 0)
    np.testing.assert_array_equal(d[:, 1:], x[:, :-1])
    np.testing.assert_array_equal(r[:, :, 0], 0)
    np.testing.assert_array_equal(r[:, :, 1:], x[:, :, :-1])


def test_concat_elu_doubles_channels():
    x = np.array([[-1.0, 2.0]], np.float32)
    y = ops.convert_to_numpy(concat_elu(x))
    np.testing.assert_allclose(y, [[np.expm1(-1.0), 2.0, 1.0, np.expm1(-2.0)]], rtol=1e-6)


@pytest.mark.parametrize("layer,axes", [
    (WNConv2D(5, (2, 3)), (0, 1, 2)), (WNConv2DTranspose(5, (2, 2), strides=(2, 2)), (0, 1, 3))])
def test_effective_kernel_has_norm_g_per_output_channel(layer, axes):
    layer.build((None, 6, 6, 4))
    layer.g.assign(np.arange(1, 6, dtype=np.float32))
    kernel = ops.convert_to_numpy(layer.kernel())
    norms = np.sqrt((kernel ** 2).sum(axis=axes))
    np.testing.assert_allclose(norms, np.arange(1, 6), rtol=1e-5)


@pytest.mark.parametrize("make,shape", [
    (lambda s: WNDense(7, init_scale=s), (64, 5)),
    (lambda s: Nin(7, init_scale=s), (4, 6, 6, 5)),
    (lambda s: WNConv2D(7, (2, 3), init_scale=s), (4, 6, 6, 5)),
    (lambda s: DownShiftedConv2D(7, strides=(2, 2), init_scale=s), (4, 8, 8, 5)),
    (lambda s: DownRightShiftedConv2DTranspose(7, init_scale=s), (4, 4, 4, 5)),
])
@pytest.mark.parametrize("init_scale", [1.0, 0.1])
def test_ddi_normalises_a_single_layer(make, shape, init_scale):
    layer = make(init_scale)
    x = np.random.RandomState(0).normal(2.0, 3.0, size=shape).astype(np.float32)
    layer(x)  # build with random V, g = 1, b = 0
    before = ops.convert_to_numpy(layer._forward(layer_input(layer, x), FULL))
    assert np.abs(before.std(axis=tuple(range(before.ndim - 1))) - init_scale).max() > 0.05
    layer(x, ctx=INIT)
    y = ops.convert_to_numpy(layer._forward(layer_input(layer, x), FULL))
    axes = tuple(range(y.ndim - 1))
    np.testing.assert_allclose(y.mean(axis=axes), 0.0, atol=1e-4 * init_scale)
    np.testing.assert_allclose(y.std(axis=axes), init_scale, rtol=1e-3)


def layer_input(layer, x):
    """What `_forward` sees: the shifted convs pad their input first."""
    if isinstance(layer, DownShiftedConv2D):
        fh, fw = layer.filter_size
        return np.pad(x, [(0, 0), (fh - 1, 0), ((fw - 1) // 2, (fw - 1) // 2), (0, 0)])
    return x


def test_ddi_normalises_every_layer_of_the_model():
    model = small_pixelcnn(nr_filters=8, nr_logistic_mix=2)
    images = random_images((16, 8, 8, 3))
    model.initialize(images)
    outputs = {}
    for layer in model.creation_order():
        if hasattr(layer, "_forward"):
            def recording(x, ctx, layer=layer, forward=layer._forward):
                outputs[layer.name] = y = forward(x, ctx)
                return y
            layer._forward = recording
    model.bits_per_dim(images)  # same batch, no dropout: the inputs DDI saw
    assert len(outputs) == len([l for l in model.creation_order() if hasattr(l, "_forward")])
    for layer in model.creation_order():
        if layer.name not in outputs:
            continue
        y = ops.convert_to_numpy(outputs[layer.name])
        axes = tuple(range(y.ndim - 1))
        np.testing.assert_allclose(y.mean(axis=axes), 0.0, atol=1e-3, err_msg=layer.name)
        np.testing.assert_allclose(y.std(axis=axes), layer.init_scale, rtol=1e-2,
                                   err_msg=layer.name)


@pytest.mark.parametrize("cls,filter_size,strides,out_hw", [
    (DownShiftedConv2D, (2, 3), (1, 1), (8, 8)),
    (DownShiftedConv2D, (2, 3), (2, 2), (4, 4)),
    (DownRightShiftedConv2D, (2, 2), (1, 1), (8, 8)),
    (DownRightShiftedConv2D, (2, 2), (2, 2), (4, 4)),
    (DownShiftedConv2DTranspose, (2, 3), (2, 2), (16, 16)),
    (DownRightShiftedConv2DTranspose, (2, 2), (2, 2), (16, 16)),
])
def test_shifted_conv_output_shapes(cls, filter_size, strides, out_hw):
    layer = cls(3, filter_size=filter_size, strides=strides)
    y = layer(np.zeros((2, 8, 8, 4), np.float32))
    assert tuple(y.shape) == (2, *out_hw, 3)


def test_gated_resnet_checks_its_inputs():
    block = GatedResnet(4, aux=True)
    with pytest.raises(ValueError, match="aux=True"):
        block(np.zeros((1, 4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="conv="):
        GatedResnet(4, conv="dilated")


def test_gated_resnet_is_value_times_sigmoid_gate():
    block = GatedResnet(2, conv="nin", nonlinearity="elu")
    x = np.random.RandomState(0).normal(size=(1, 2, 2, 2)).astype(np.float32)
    y = ops.convert_to_numpy(block(x))
    c1 = ops.elu(block.conv1(ops.elu(x)))
    c2 = ops.convert_to_numpy(block.conv2(c1))
    expected = x + c2[..., :2] / (1 + np.exp(-c2[..., 2:]))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("filter_size", [(2, 3), (2, 2), (1, 3), (2, 1), (1, 1)])
def test_filter_gradient_as_products_equals_the_backend_gradient(monkeypatch, filter_size):
    import tensorflow as tf
    from pixel_cnn_pp.model import conv
    rs = np.random.RandomState(0)
    kh, kw = filter_size
    x = tf.constant(rs.normal(size=(3, 5 + kh - 1, 6 + kw - 1, 4)).astype(np.float32))
    kernel = tf.constant(rs.normal(size=(kh, kw, 4, 7)).astype(np.float32))
    dy = tf.constant(rs.normal(size=(3, 5, 6, 7)).astype(np.float32))
    grads = {}
    for mode in ("products", "backend"):
        monkeypatch.setattr(conv, "FILTER_GRADIENT", mode)
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv.valid_conv(x, kernel)
        grads[mode] = [y] + tape.gradient(y, [x, kernel], output_gradients=dy)
    for ours, theirs in zip(grads["products"], grads["backend"]):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-5)

    # A traced step whose batch size is unknown until it runs: the rows are counted at run time.
    monkeypatch.setattr(conv, "FILTER_GRADIENT", "products")
    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(x.shape[1:]), tf.float32),
                                  tf.TensorSpec((None,) + tuple(dy.shape[1:]), tf.float32)])
    def kernel_grad(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            y = conv.valid_conv(x, kernel)
        return tape.gradient(y, kernel, output_gradients=dy)
    np.testing.assert_allclose(kernel_grad(x, dy).numpy(), grads["backend"][2].numpy(),
                               rtol=1e-5, atol=1e-5)
    # The default is the backend's own gradient; the machine's choice is runtime/hardware.py's.
    assert conv.DEFAULT_FILTER_GRADIENT == "backend"
    monkeypatch.setattr(conv, "FILTER_GRADIENT", "auto")
    with pytest.raises(ValueError, match="FILTER_GRADIENT='auto' is not one of backend, products"):
        conv.valid_conv(x, kernel)


@pytest.mark.parametrize("name", sorted(NONLINEARITIES))
def test_every_resnet_nonlinearity_maps_zero_to_zero(name):
    """The cached sampler pads a convolution's input, then applies the nonlinearity to the
    window (`of_activated`): the same as padding its output only where f(0) = 0."""
    zeros = ops.convert_to_numpy(NONLINEARITIES[name](ops.zeros((1, 2, 2, 3))))
    np.testing.assert_array_equal(zeros, 0)
