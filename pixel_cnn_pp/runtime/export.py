"""Versioned SavedModels for TF Serving, for every model of this project.

Layout: `<export_dir>/<version>/` (what TF Serving watches), written to a temporary folder and
renamed at the end. Signatures (only core TensorFlow ops, no Python callbacks):

* `serving_default`: images uint8 (B, H, W, C) [+ class_label int32 (B,)] ->
  bits_per_dim float32 (B,), log_likelihood float32 (B,) in nats.
* `log_likelihood_map`: images uint8 (B, H, W, C) [+ class_label int32 (B,)] ->
  log_likelihood float32 (B, H, W), each pixel's term in nats (`model.log_likelihood(images,
  reduce="pixel")`; they sum to serving_default's log_likelihood).
* `sample`: num_samples int32 (), seed int64 () [+ class_label int32 ()] ->
  images uint8 (num_samples, H, W, C); the same seed gives the same images.
* `complete`: images uint8 (B, H, W, C), known bool (H, W) or (B, H, W), seed int64 ()
  [+ class_label int32 (B,)] -> images uint8 (B, H, W, C): `model.complete`'s images, the
  pixels where known is false drawn; B is bounded by max_samples as `sample`'s num_samples.

A prior over code maps (a categorical output) takes and returns `codes` int32 (B, H, W) in
[0, K) where the others say `images`. A model with a condition map takes `condition` (B, Hc,
Wc, D) float32, or int32 (B, Hc, Wc) codes, one per datum (per sample in `sample`), in every
signature, before `class_label`.

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


def _check_batch_of(tensor, name, dtype, shape, batch=None, codes=None):
    """`tensor` of shape [batch, *shape] (batch >= 1, or equal to `batch` if given) and, for
    code maps (`codes` = K), values in [0, K), checked after the shape."""
    full, padded = _shape_of(tensor, 1 + len(shape))
    ok = tf.logical_and(tf.equal(tf.size(full), 1 + len(shape)),
                        tf.reduce_all(tf.equal(padded[1:], list(shape))))
    dims = ", ".join(map(str, shape))
    if batch is None:
        check = _check(tf.logical_and(ok, padded[0] > 0),
                       f"{name} must be {dtype} [batch >= 1, {dims}]; given shape", full)
    else:
        check = _check(tf.logical_and(ok, tf.equal(padded[0], batch)),
                       f"{name} must be {dtype} [batch, {dims}], one per datum; given shape",
                       full, "for a batch of", batch)
    if not codes:
        return [check]
    with tf.control_dependencies([check]):
        return [_check(tf.reduce_all((tensor >= 0) & (tensor < codes)),
                       f"{name} must be in [0, {codes}); given values from",
                       tf.reduce_min(tensor), "to", tf.reduce_max(tensor))]


def _check_images(model, images):
    if model.num_codes:
        return _check_batch_of(images, "codes", "int32", model.data_shape, codes=model.num_codes)
    return _check_batch_of(images, "images", "uint8", model.image_shape)


def _check_condition(model, condition, batch):
    codes = model.condition_codes
    return _check_batch_of(condition, "condition", "int32" if codes else "float32",
                           model.condition_shape, batch, codes)


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
    data = "codes" if model.num_codes else "images"  # the name of the data in and out
    images = tf.TensorSpec(None, tf.int32 if model.num_codes else tf.uint8, name=data)
    n = tf.TensorSpec(None, tf.int32, name="num_samples")
    seed = tf.TensorSpec(None, tf.int64, name="seed")
    norm = math.log(2.0) * model.num_dims

    # The optional inputs, in this order; passed as *args, as Keras binds the input signature
    # to parameters without defaults.
    optional = ((["condition"] if model.condition_shape else [])
                + (["class_label"] if model.num_classes else []))

    def checked_images(images, extra):
        """(images, class_label, condition) after their checks, for the signatures that take
        data (images or code maps)."""
        given = dict(zip(optional, extra))
        class_label, condition = given.get("class_label"), given.get("condition")
        checks = _check_images(model, images)
        batch = tf.shape(images)[0]
        with tf.control_dependencies(checks):
            if model.num_classes:
                checks = _check_labels(model, class_label, batch)
            if condition is not None:
                checks = checks + _check_condition(model, condition, batch)
        with tf.control_dependencies(checks):
            images = tf.ensure_shape(tf.identity(images), [None, *model.data_shape])
            if class_label is not None:
                class_label = tf.identity(class_label)
            if condition is not None:
                condition = tf.ensure_shape(tf.identity(condition), [None, *model.condition_shape])
        return images, class_label, condition

    def likelihood(images, *extra):
        images, class_label, condition = checked_images(images, extra)
        nats = model.nll(model.distribution.encode(images), class_label, condition=condition)
        return {"log_likelihood": -nats, "bits_per_dim": nats / norm}

    def likelihood_map(images, *extra):
        images, class_label, condition = checked_images(images, extra)
        return {"log_likelihood": model.log_prob(model.distribution.encode(images), class_label,
                                                 "pixel", condition)}

    def complete(images, known, seed, *extra):
        images, class_label, condition = checked_images(images, extra)
        batch = tf.shape(images)[0]
        seed = _checked_scalar(seed, "seed must be an int64 scalar")
        checks = _check_known(model, known, batch) + [
            _check(batch <= max_samples, f"{data} must be at most {max_samples} per request "
                                         "(the export's max_samples); given", batch)]
        with tf.control_dependencies(checks):
            known = tf.ensure_shape(tf.broadcast_to(known, [batch, *model.image_shape[:2]]),
                                    [None, *model.image_shape[:2]])
            return {data: complete_images(model, images, known, seed, class_label, condition)}

    def sample(num_samples, seed, *extra):
        given = dict(zip(optional, extra))
        class_label, condition = given.get("class_label"), given.get("condition")
        # Scalars checked before any allocation that depends on them.
        num_samples = _checked_scalar(num_samples, "num_samples must be an int32 scalar")
        seed = _checked_scalar(seed, "seed must be an int64 scalar")
        checks = [_check((num_samples >= 1) & (num_samples <= max_samples),
                         f"num_samples must be in [1, {max_samples}] (the export's "
                         "max_samples); given", num_samples)]
        if model.num_classes:
            checks += _check_labels(model, class_label)
        with tf.control_dependencies(checks):
            if condition is not None:  # one map per sample
                checks = _check_condition(model, condition, num_samples)
        with tf.control_dependencies(checks):
            if class_label is not None:
                class_label = tf.reshape(class_label, [])
            if condition is not None:
                condition = tf.ensure_shape(tf.identity(condition), [None, *model.condition_shape])
            return {data: sample_images(model, tf.identity(num_samples), seed, class_label,
                                        condition=condition)}

    known = tf.TensorSpec(None, tf.bool, name="known")
    specs = {"condition": tf.TensorSpec(None, tf.int32 if model.condition_codes else tf.float32,
                                        name="condition"),
             "class_label": tf.TensorSpec(None, tf.int32, name="class_label")}
    extra = [specs[name] for name in optional]
    return [("serving_default", likelihood, [images, *extra]),
            ("log_likelihood_map", likelihood_map, [images, *extra]),
            ("complete", complete, [images, known, seed, *extra]),
            ("sample", sample, [n, seed, *extra])]


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
    if model.num_codes:
        request.inputs["codes"].CopyFrom(
            tf.make_tensor_proto(tf.zeros((1, *model.data_shape), tf.int32)))
    else:
        request.inputs["images"].CopyFrom(
            tf.make_tensor_proto(tf.zeros((1, *model.image_shape), tf.uint8)))
    if model.num_classes:
        request.inputs["class_label"].CopyFrom(tf.make_tensor_proto([0], tf.int32))
    if model.condition_shape:
        request.inputs["condition"].CopyFrom(tf.make_tensor_proto(tf.zeros(
            (1, *model.condition_shape), tf.int32 if model.condition_codes else tf.float32)))
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
