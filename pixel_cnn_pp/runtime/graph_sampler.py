"""The export's sampler: the API's compiled sampler (`pixel_cnn_pp.model.sampling`, cached by
default) traced into one TensorFlow graph of core ops (While, If, Conv2D, MatMul, bitwise ops
for the draws; no PyFunc), so TF Serving users get the same fast sampler and, for a seed, the
same images as `model.sample(n, seed=seed)`.
"""
import tensorflow as tf

from pixel_cnn_pp.model import sampling
from pixel_cnn_pp.model.autoregressive import float_to_images


@tf.autograph.experimental.do_not_convert  # keras.ops loops: nothing for AutoGraph to rewrite
def sample_images(model, num_samples, seed, class_label=None, method="cached"):
    """uint8 images (num_samples, H, W, C) from `model`; num_samples and seed may be tensors.

    seed (int64) keys the draws by its low 32 bits, as `model.sample` does with a Python int.
    class_label: a scalar (every image) or one int per image, for a class-conditional model.
    """
    n = tf.convert_to_tensor(num_samples, tf.int32)
    labels = None if class_label is None else tf.broadcast_to(tf.cast(class_label, tf.int32), [n])
    x = sampling.METHODS[method](model, n, tf.cast(seed, tf.int64), labels)
    return float_to_images(x)
