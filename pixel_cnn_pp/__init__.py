"""PixelCNN++ in Keras 3, and the model-independent machinery every model of this project uses.

Two layers, one dependency rule (`runtime` may import `model`, never the reverse):

* `pixel_cnn_pp.model`: backend-portable model code in `keras.ops` only (layers, output
  distributions, the PixelCNN++ network, samplers, the original optimiser and the training
  step, the model registry). Runs on the TensorFlow and JAX backends.
* `pixel_cnn_pp.runtime`: TensorFlow only (training loop and tf.distribute, data, checkpoints
  and runs, SavedModel export, TF1 checkpoint conversion).

Importing them sets no environment variable and reads nothing of the machine: which kernels
run is TensorFlow's default and the user's environment, alike in an API process, its children
and a serving process. The CLIs' hardware choices (oneDNN's rewrites, the filter gradient) are
made in `pixel_cnn_pp.runtime.hardware`.
"""
