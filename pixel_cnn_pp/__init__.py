"""PixelCNN++ in Keras 3, and the model-independent machinery every model of this project uses.

Two layers, one dependency rule (`runtime` may import `model`, never the reverse):

* `pixel_cnn_pp.model`: backend-portable model code in `keras.ops` only (layers, output
  distributions, the PixelCNN++ network, samplers, the original optimiser and the training
  step, the model registry). Runs on the TensorFlow and JAX backends.
* `pixel_cnn_pp.runtime`: TensorFlow only (training loop and tf.distribute, data, checkpoints
  and runs, SavedModel export, TF1 checkpoint conversion).
"""
import os

# oneDNN's graph rewrites (convolution fused with its bias, oneDNN kernels for convolutions and
# matmuls) are TensorFlow's default only on CPUs with AVX-512 or AMX; on others (AVX2) they made
# a training step 1.4x faster (bench/RESULTS.md). Effective if TensorFlow is not imported yet;
# TF_ENABLE_ONEDNN_OPTS=0 keeps them off. No effect on GPUs or the JAX backend.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
