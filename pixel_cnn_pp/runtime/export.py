"""Versioned SavedModels for TF Serving, for every model of this project.

Layout: `<export_dir>/<version>/` (what TF Serving watches), written to a temporary folder and
renamed at the end. Signatures (only core TensorFlow ops, no Python callbacks):

* `serving_default`: images uint8 (B, H, W, C) [+ class_label int32 (B,)] ->
  bits_per_dim float32 (B,), log_likelihood float32 (B,) in nats.
* `sample`: num_samples int32 (), seed int64 () [+ class_label int32 ()] ->
  images uint8 (num_samples, H, W, C); the same seed gives the same images.

`assets.extra/metadata.json` describes the model (kind, hyper-parameters, image shape, training
step) and the kernel settings it was exported under (`hardware.kernel_settings`: a serving
process under the same ones samples the same images) for tools that do not import this
project; `assets.extra/tf_serving_warmup_requests` is written when tensorflow-serving-api is
installed.
"""
import json
import math
import os
import re
import shlex
import shutil
import tempfile

import tensorflow as tf

from pixel_cnn_pp.errors import ExportError
from pixel_cnn_pp.model.autoregressive import images_to_float
from pixel_cnn_pp.runtime import atomic, hardware, runs
from pixel_cnn_pp.runtime.graph_sampler import complete_images, sample_images

METADATA_FILE = os.path.join("assets.extra", "metadata.json")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def next_version(export_dir):
    """1 + the largest numeric version folder in `export_dir` (1 for a new folder)."""
    if not tf.io.gfile.isdir(export_dir):
        return 1
    versions = [int(d.rstrip("/")) for d in tf.io.gfile.listdir(export_dir)
                if re.fullmatch(r"\d+/?", d)]
    return max(versions, default=0) + 1


DEFAULT_MAX_SAMPLES = 256  # per `sample` request: bounds the memory and time one request takes


def _check(condition, message, *values):
    """A graph assertion whose error names the input, what is expected and what was given."""
    return tf.debugging.Assert(condition, [message, *values], summarize=8)


def _shape_of(tensor, rank):
    """(the dynamic shape, a length-`rank` view of it that exists for any given rank)."""
    shape = tf.shape(tensor)
    return shape, tf.pad(shape, [[0, rank]])[:rank]


def _check_images(model, images):
    h, w, c = model.image_shape
    shape, padded = _shape_of(images, 4)
    ok = tf.logical_and(tf.equal(tf.size(shape), 4),
                        tf.reduce_all(tf.equal(padded[1:], [h, w, c])))
    return [_check(tf.logical_and(ok, padded[0] > 0),
                   f"images must be uint8 [batch >= 1, {h}, {w}, {c}]; given shape", shape)]


def _check_labels(model, class_label, batch=None):
    """class_label: a scalar (`batch` None: the sample signature) or one int per image, in
    [0, num_classes); the range is checked after the shape."""
    k = model.num_classes
    shape, padded = _shape_of(class_label, 1)
    if batch is None:
        shape_ok = tf.equal(tf.size(shape), 0)
        shape_check = _check(shape_ok, "class_label must be an int32 scalar; given shape", shape)
    else:
        shape_ok = tf.logical_and(tf.equal(tf.size(shape), 1), tf.equal(padded[0], batch))
        shape_check = _check(shape_ok, "class_label must be int32 [batch], one per image; "
                                       "given shape", shape, "for a batch of", batch)
    with tf.control_dependencies([shape_check]):
        return [_check(tf.reduce_all((class_label >= 0) & (class_label < k)),
                       f"class_label must be in [0, {k}); given", class_label)]


def _check_known(model, known, batch):
    """known: bool (H, W) or (B, H, W) for a batch of B images."""
    h, w = model.image_shape[:2]
    shape, padded = _shape_of(known, 3)
    rank = tf.size(shape)
    tail = tf.pad(shape, [[3, 0]])[-2:]
    ok = tf.logical_or(
        tf.logical_and(tf.equal(rank, 2), tf.reduce_all(tf.equal(tail, [h, w]))),
        tf.logical_and(tf.equal(rank, 3), tf.reduce_all(tf.equal(padded, [batch, h, w]))))
    return [_check(ok, f"known must be bool [{h}, {w}] or [batch, {h}, {w}]; given shape",
                   shape, "for a batch of", batch)]


def _checked_scalar(value, what):
    """`value` as a scalar, after a check that it is one (before anything depends on it)."""
    with tf.control_dependencies([_check(tf.equal(tf.size(tf.shape(value)), 0),
                                         f"{what}; given shape", tf.shape(value))]):
        return tf.reshape(value, [])


def _signatures(model, max_samples):
    """(name, function, input signature) of each endpoint. Inputs are declared without a
    shape and checked in the graph: a Session (TF Serving's loader) does not check the shapes
    of a signature, and a declared shape would let the checks be folded away."""
    images = tf.TensorSpec(None, tf.uint8, name="images")
    n = tf.TensorSpec(None, tf.int32, name="num_samples")
    seed = tf.TensorSpec(None, tf.int64, name="seed")
    norm = math.log(2.0) * model.num_dims

    # Optional inputs as *args: Keras binds the input signature to parameters without defaults.
    def checked_images(images, label):
        """(images, class_label) after their checks, for the signatures that take images."""
        class_label = label[0] if label else None
        checks = _check_images(model, images)
        if model.num_classes:
            with tf.control_dependencies(checks):
                checks = _check_labels(model, class_label, tf.shape(images)[0])
        with tf.control_dependencies(checks):
            images = tf.ensure_shape(tf.identity(images), [None, *model.image_shape])
            if class_label is not None:
                class_label = tf.identity(class_label)
        return images, class_label

    def likelihood(images, *label):
        images, class_label = checked_images(images, label)
        nats = model.nll(images_to_float(images), class_label)
        return {"log_likelihood": -nats, "bits_per_dim": nats / norm}

    def likelihood_map(images, *label):
        images, class_label = checked_images(images, label)
        return {"log_likelihood": model.log_prob(images_to_float(images), class_label, "pixel")}

    def complete(images, known, seed, *label):
        images, class_label = checked_images(images, label)
        batch = tf.shape(images)[0]
        seed = _checked_scalar(seed, "seed must be an int64 scalar")
        checks = _check_known(model, known, batch) + [
            _check(batch <= max_samples, f"images must be at most {max_samples} per request "
                                         "(the export's max_samples); given", batch)]
        with tf.control_dependencies(checks):
            known = tf.ensure_shape(tf.broadcast_to(known, [batch, *model.image_shape[:2]]),
                                    [None, *model.image_shape[:2]])
            return {"images": complete_images(model, images, known, seed, class_label)}

    def sample(num_samples, seed, *label):
        class_label = label[0] if label else None
        # Scalars checked before any allocation that depends on them.
        num_samples = _checked_scalar(num_samples, "num_samples must be an int32 scalar")
        seed = _checked_scalar(seed, "seed must be an int64 scalar")
        checks = [_check((num_samples >= 1) & (num_samples <= max_samples),
                         f"num_samples must be in [1, {max_samples}] (the export's "
                         "max_samples); given", num_samples)]
        if model.num_classes:
            checks += _check_labels(model, class_label)
        with tf.control_dependencies(checks):
            if class_label is not None:
                class_label = tf.reshape(class_label, [])
            return {"images": sample_images(model, tf.identity(num_samples), seed, class_label)}

    known = tf.TensorSpec(None, tf.bool, name="known")
    labels = [tf.TensorSpec(None, tf.int32, name="class_label")] if model.num_classes else []
    return [("serving_default", likelihood, [images, *labels]),
            ("log_likelihood_map", likelihood_map, [images, *labels]),
            ("complete", complete, [images, known, seed, *labels]),
            ("sample", sample, [n, seed, *labels])]


def export_model(model, export_dir, version=None, overwrite=False, metadata=None,
                 max_samples=DEFAULT_MAX_SAMPLES):
    """Write `model` (its current weights: pass the EMA weights) as `export_dir/<version>/`;
    its `sample` signature refuses more than `max_samples` images per request. Returns the
    version folder."""
    version = next_version(export_dir) if version is None else int(version)
    if version <= 0:
        raise ExportError(f"--version={version} must be a positive integer")
    if int(max_samples) < 1:
        raise ExportError(f"--max_samples={max_samples} must be a positive integer")
    atomic.check_writable_dir(export_dir, "export_dir", ExportError)
    final = os.path.join(export_dir, str(version))
    if tf.io.gfile.exists(final) and not overwrite:
        raise ExportError(f"{final!r} exists; pass --overwrite to replace it or choose --version")
    tf.io.gfile.makedirs(export_dir)
    _remove_stale_tmp(export_dir)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-{os.getpid()}-", dir=export_dir)
    try:
        # A plain tf.Module that tracks the variables themselves: tracking the Keras model
        # would also trace its default `call(x)` signature (no class_label), and without the
        # tf.Variables the session loader of TF Serving / saved_model_cli finds no variables.
        module = tf.Module()
        module.model_variables = [v.value for v in model.variables]
        # Signatures only: a tf.function also set as an attribute of the module was traced a
        # second time by the save (the sampler's trace is most of an export's time).
        signatures = {name: tf.function(fn, input_signature=signature).get_concrete_function()
                      for name, fn, signature in _signatures(model, int(max_samples))}
        # No gradient functions: serving needs none, and tracing those of the convolutions'
        # custom gradient (model/conv.py) took 8 s of a small model's export.
        tf.saved_model.save(module, tmp, signatures=signatures, options=tf.saved_model.SaveOptions(
            experimental_custom_gradients=False))
        tf.io.gfile.makedirs(os.path.join(tmp, "assets.extra"))
        meta = {"model": type(model).__name__, "config": model.get_config(),
                "image_shape": list(model.image_shape), "num_classes": model.num_classes,
                "signatures": sorted(signatures), "max_samples": int(max_samples),
                "kernel_settings": hardware.kernel_settings(), **(metadata or {})}
        atomic.write_json(os.path.join(tmp, METADATA_FILE), meta)
        _write_warmup(model, os.path.join(tmp, WARMUP_FILE))
        atomic.replace_dir(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return final


def _remove_stale_tmp(export_dir):
    """Remove `.tmp-<version>-<pid>-*` folders of exports whose process is gone (killed while
    writing); a live export's folder is left alone."""
    for name in os.listdir(export_dir):
        match = re.fullmatch(r"\.tmp-\d+-(\d+)-.*", name)
        if match and not atomic.pid_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(export_dir, name), ignore_errors=True)


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


def export_run(save_dir, export_dir=None, version=None, overwrite=False, skip_if_current=False,
               max_samples=DEFAULT_MAX_SAMPLES):
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
    return export_model(run.model, export_dir, version, overwrite, metadata, max_samples)


def export_tf1_checkpoint(path, export_dir, version=None, overwrite=False, image_size=(32, 32),
                         weights="ema", resnet_nonlinearity=None,
                         max_samples=DEFAULT_MAX_SAMPLES):
    """Export an original TF1 checkpoint (openai/pixel-cnn, pixelsnail-public) directly."""
    from pixel_cnn_pp.runtime import tf1_checkpoint
    ckpt = tf1_checkpoint.read(path)
    model = tf1_checkpoint.load_model(ckpt, image_size, weights, resnet_nonlinearity)
    # build_model names a model after its registered kind ("pixel_cnn_pp", "pixel_snail").
    metadata = {"kind": model.name, "source": f"tf1 checkpoint {ckpt.path}",
                "training_step": None,
                "weights": "polyak_average" if weights == "ema" else "raw"}
    return export_model(model, export_dir, version, overwrite, metadata, max_samples)


def describe(path):
    """The metadata.json of an export, as a dict (readable with any JSON reader)."""
    if not tf.io.gfile.exists(os.path.join(path, METADATA_FILE)):
        raise ExportError(f"{path!r} is not an export version of this project "
                          f"({METADATA_FILE} missing)")
    with tf.io.gfile.GFile(os.path.join(path, METADATA_FILE)) as f:
        return json.load(f)


def serving_command(path, meta):
    """A TF Serving command line for the export version `path` (its metadata `meta`) under the
    kernel settings it was exported with, so that it samples the images the exporting process
    did; none are prefixed for an export that did not record them."""
    environment = hardware.serving_environment(meta.get("kernel_settings") or {})
    base = os.path.dirname(os.path.abspath(path.rstrip("/")))
    return " ".join([*environment, "tensorflow_model_server",
                     f"--model_name={shlex.quote(str(meta.get('kind', 'model')))}",
                     f"--model_base_path={shlex.quote(base)}", "--rest_api_port=8501"])


def describe_lines(path):
    """What `export.py --describe` prints: the metadata, as JSON, and how to serve the export
    under the kernel settings it was exported with."""
    meta = describe(path)
    environment = hardware.serving_environment(meta.get("kernel_settings") or {})
    how = (f"serve it with {' '.join(environment)} in the environment (set before TensorFlow "
           "starts) to run the kernels it was exported with, e.g.:" if environment else
           "it records no kernel settings; serve it with, e.g.:")
    return [json.dumps(meta, indent=2, sort_keys=True), how, "  " + serving_command(path, meta)]
