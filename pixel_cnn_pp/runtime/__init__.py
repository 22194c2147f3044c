"""TensorFlow-only code shared by every model: training, data, checkpoints, export, TF1 loading."""
