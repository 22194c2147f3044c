"""The cached sampler (pixel_cnn_pp/model/sampling.py): its row-by-row network equals the full forward pass,
and it returns exactly the naive sampler's images for the same seed."""
import numpy as np
import pytest
from keras import ops

from conftest import random_images, small_pixelcnn
from pixel_cnn_pp.model import sampling
from pixel_cnn_pp.model.autoregressive import float_to_images, images_to_float
from pixel_snail.model import PixelSNAIL


def _model(size, channels=3, num_classes=None, snail=False, **kw):
    if snail:
        model = PixelSNAIL(image_shape=(size, size, channels), nr_resnet=1, nr_filters=8,
                           nr_logistic_mix=2, dropout_p=0.0, attn_rep=2, key_size=4,
                           query_size=4, **kw)
        model.build_all()
    else:
        model = small_pixelcnn(image_shape=(size, size, channels), num_classes=num_classes, **kw)
    labels = None if num_classes is None else np.arange(8) % num_classes
    model.initialize(random_images((8, size, size, channels), seed=1), class_label=labels)
    return model


@pytest.mark.parametrize("size,channels,num_classes,snail", [
    (8, 3, None, False), (16, 3, 4, False), (12, 1, None, False), (8, 3, None, True),
    (6, 1, None, True)])
def test_row_by_row_network_equals_the_full_forward(size, channels, num_classes, snail):
    """Every row's output, computed from the cache as the sampler does, equals the full
    network's on a complete image (PixelCNN++: all stage phases, 16 rows = four periods of 4;
    PixelSNAIL: attention over the cached keys and values of the rows above)."""
    model = _model(size, channels, num_classes, snail)
    x = images_to_float(random_images((3, size, size, channels), seed=2))
    labels = None if num_classes is None else ops.convert_to_tensor(np.array([0, 3, 1]))
    full = ops.convert_to_numpy(model(x, class_label=labels))
    prev, held = {}, {}
    for i in range(size):
        params, current, held = sampling._row_step(model, x[:, i:i + 1], prev, held, labels,
                                                model.row_phase(i), i)
        prev = {**prev, **current}
        np.testing.assert_allclose(ops.convert_to_numpy(params)[:, 0], full[:, i],
                                   rtol=1e-4, atol=1e-4 * np.abs(full).max(), err_msg=f"row {i}")


@pytest.mark.parametrize("size,num_classes,snail", [(8, None, False), (16, 4, False),
                                                    (8, None, True)])
def test_fast_sampler_returns_the_naive_images(size, num_classes, snail):
    """Same seed -> the same continuous samples (float32 accuracy) and the same uint8 images,
    except where a value lies within float rounding of a level boundary (then one level off)."""
    model = _model(size, num_classes=num_classes, snail=snail,
                   **({} if snail else {"nr_filters": 8}))
    labels = None if num_classes is None else np.array([1, 3], np.int32)
    fast = ops.convert_to_numpy(sampling.cached_continuous(model, 2, 7, labels))
    naive = ops.convert_to_numpy(sampling.naive_continuous(model, 2, 7, labels))
    np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-4)
    images = model.sample(2, seed=7, class_label=labels, method="fast")
    assert images.dtype == np.uint8 and images.shape == (2, size, size, 3)
    np.testing.assert_array_equal(images, float_to_images(fast))
    levels = naive * 127.5 + 127.5
    differ = images != ops.convert_to_numpy(float_to_images(naive))
    near_boundary = np.abs(levels - np.floor(levels) - 0.5) < 1e-3
    assert not np.any(differ & ~near_boundary), np.argwhere(differ & ~near_boundary)
    assert differ.mean() < 1e-3
    assert len(np.unique(images)) > 20  # real samples, not a constant image
    other = model.sample(2, seed=8, class_label=labels)  # "auto" is the cached sampler
    assert not np.array_equal(other, images)


def test_sample_method_is_checked():
    model = _model(8)
    with pytest.raises(ValueError, match="method='slow' is not one of"):
        model.sample(1, method="slow")
