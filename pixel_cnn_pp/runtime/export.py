"""Versioned SavedModels for TF Serving, for every model of this project.

Layout: `<export_dir>/<version>/` (what TF Serving watches), written to a temporary folder and
renamed at the end. Signatures (only core TensorFlow ops, no Python callbacks):

* `serving_default`: images uint8 (B, H, W, C) [+ class_label int32 (B,)] ->
  bits_per_dim float32 (B,), log_likelihood float32 (B,) in nats.
* `sample`: num_samples int32 (), seed int64 () [+ class_label int32 ()] ->
  images uint8 (num_samples, H, W, C); the same seed gives the same images.

`assets.extra/metadata.json` describes the model (kind, hyper-parameters, image shape, training
step) for tools that do not import this project; `assets.extra/tf_serving_warmup_requests` is
written when tensorflow-serving-api is installed.
"""
import json
import math
import os
import re
import shutil
import tempfile

import tensorflow as tf

from pixel_cnn_pp.errors import ExportError
from pixel_cnn_pp.model.autoregressive import images_to_float
from pixel_cnn_pp.runtime import atomic, runs
from pixel_cnn_pp.runtime.graph_sampler import sample_images

METADATA_FILE = os.path.join("assets.extra", "metadata.json")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def next_version(export_dir):
    """1 + the largest numeric version folder in `export_dir` (1 for a new folder)."""
    if not tf.io.gfile.isdir(export_dir):
        return 1
    versions = [int(d.rstrip("/")) for d in tf.io.gfile.listdir(export_dir)
                if re.fullmatch(r"\d+/?", d)]
    return max(versions, default=0) + 1


def _check_labels(model, class_label):
    k = model.num_classes
    return [tf.debugging.assert_greater_equal(class_label, 0, message=f"class_label must be in [0, {k})"),
            tf.debugging.assert_less(class_label, k, message=f"class_label must be in [0, {k})")]


def _signatures(model):
    """(name, function, input signature) of each endpoint."""
    h, w, c = model.image_shape
    images = tf.TensorSpec([None, h, w, c], tf.uint8, name="images")
    n = tf.TensorSpec([], tf.int32, name="num_samples")
    seed = tf.TensorSpec([], tf.int64, name="seed")
    norm = math.log(2.0) * model.num_dims

    # Optional inputs as *args: Keras binds the input signature to parameters without defaults.
    def likelihood(images, *label):
        class_label = label[0] if label else None
        with tf.control_dependencies(_check_labels(model, class_label) if model.num_classes else []):
            nats = model.nll(images_to_float(images), class_label)
        return {"log_likelihood": -nats, "bits_per_dim": nats / norm}

    def sample(num_samples, seed, *label):
        class_label = label[0] if label else None
        checks = [tf.debugging.assert_positive(num_samples, message="num_samples must be positive")]
        if model.num_classes:
            checks += _check_labels(model, class_label)
        with tf.control_dependencies(checks):
            return {"images": sample_images(model, tf.identity(num_samples), seed, class_label)}

    if model.num_classes:
        labels = tf.TensorSpec([None], tf.int32, name="class_label")
        label = tf.TensorSpec([], tf.int32, name="class_label")
        return [("serving_default", likelihood, [images, labels]), ("sample", sample, [n, seed, label])]
    return [("serving_default", likelihood, [images]), ("sample", sample, [n, seed])]


def export_model(model, export_dir, version=None, overwrite=False, metadata=None):
    """Write `model` (its current weights: pass the EMA weights) as `export_dir/<version>/`.
    Returns the version folder."""
    version = next_version(export_dir) if version is None else int(version)
    if version <= 0:
        raise ExportError(f"--version={version} must be a positive integer")
    final = os.path.join(export_dir, str(version))
    if tf.io.gfile.exists(final) and not overwrite:
        raise ExportError(f"{final!r} exists; pass --overwrite to replace it or choose --version")
    tf.io.gfile.makedirs(export_dir)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
    try:
        # A plain tf.Module that tracks the variables themselves: tracking the Keras model
        # would also trace its default `call(x)` signature (no class_label), and without the
        # tf.Variables the session loader of TF Serving / saved_model_cli finds no variables.
        module = tf.Module()
        module.model_variables = [v.value for v in model.variables]
        signatures = {}
        for name, fn, signature in _signatures(model):
            function = tf.function(fn, input_signature=signature)
            setattr(module, name, function)
            signatures[name] = function.get_concrete_function()
        tf.saved_model.save(module, tmp, signatures=signatures)
        tf.io.gfile.makedirs(os.path.join(tmp, "assets.extra"))
        meta = {"model": type(model).__name__, "config": model.get_config(),
                "image_shape": list(model.image_shape), "num_classes": model.num_classes,
                "signatures": ["serving_default", "sample"], **(metadata or {})}
        atomic.write_json(os.path.join(tmp, METADATA_FILE), meta)
        _write_warmup(model, os.path.join(tmp, WARMUP_FILE))
        atomic.replace_dir(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return final


def _write_warmup(model, path):
    """TF Serving replays these requests at load time, so the first real request is fast."""
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError:
        return False
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(
        tf.make_tensor_proto(tf.zeros((1, *model.image_shape), tf.uint8)))
    if model.num_classes:
        request.inputs["class_label"].CopyFrom(tf.make_tensor_proto([0], tf.int32))
    with tf.io.TFRecordWriter(path) as writer:
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        writer.write(log.SerializeToString())
    return True


def export_run(save_dir, export_dir=None, version=None, overwrite=False, skip_if_current=False):
    """Export the EMA weights of the latest checkpoint of a training run. With
    `skip_if_current`, return the newest version instead if it already holds that step."""
    export_dir = export_dir or os.path.join(save_dir, "export")
    run = runs.load_run(save_dir, weights="ema")
    newest = os.path.join(export_dir, str(next_version(export_dir) - 1))
    if skip_if_current and tf.io.gfile.exists(os.path.join(newest, METADATA_FILE)) \
            and describe(newest).get("training_step") == run.step:
        return newest
    metadata = {"kind": run.model.name, "dataset": run.metadata["dataset"],
                "training_step": run.step, "weights": "polyak_average"}
    return export_model(run.model, export_dir, version, overwrite, metadata)


def export_tf1_checkpoint(path, export_dir, version=None, overwrite=False, image_size=(32, 32),
                         weights="ema", resnet_nonlinearity=None):
    """Export an original TF1 checkpoint (openai/pixel-cnn, pixelsnail-public) directly."""
    from pixel_cnn_pp.runtime import tf1_checkpoint
    model = tf1_checkpoint.load_model(path, image_size, weights, resnet_nonlinearity)
    # build_model names a model after its registered kind ("pixel_cnn_pp", "pixel_snail").
    metadata = {"kind": model.name,
                "source": f"tf1 checkpoint {tf1_checkpoint.resolve_path(path)}",
                "training_step": None,
                "weights": "polyak_average" if weights == "ema" else "raw"}
    return export_model(model, export_dir, version, overwrite, metadata)


def describe(path):
    """The metadata.json of an export, as a dict (readable with any JSON reader)."""
    with tf.io.gfile.GFile(os.path.join(path, METADATA_FILE)) as f:
        return json.load(f)
