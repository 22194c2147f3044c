"""SavedModel export for TF Serving: signatures, the session loader (saved_model_cli), a fresh
process that never imports this project, core ops only, versions and bad input."""
import json
import os
import re
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from tensorflow.core.protobuf import saved_model_pb2

from pixel_cnn_pp.errors import ExportError
from pixel_cnn_pp.runtime import hardware
from pixel_cnn_pp.runtime.export import describe, export_model, next_version
from conftest import REPO, random_images, small_pixelcnn
from models import assert_same_levels
from processes import in_one_process

PYTHON_CALLBACK_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: (Keras model, export path, .keras file)} of an unconditional and a
    class-conditional model."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    keras.utils.set_random_seed(1)  # the same models whatever ran before in this process
    for name, classes in (("plain", None), ("cond", 3)):
        model = small_pixelcnn(nr_filters=8, nr_logistic_mix=2,
                               num_classes=classes)
        labels = None if classes is None else [0, 1, 2, 0]
        model.initialize(random_images((4, 8, 8, 3)), class_label=labels)
        path = export_model(model, str(root / name), metadata={"training_step": 7})
        model.save(root / f"{name}.keras")
        out[name] = (model, path, root / f"{name}.keras")
    return out


def saved_model_cli(*args):
    result = subprocess.run(["saved_model_cli", *args], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_layout_and_metadata(exported):
    _, path, _ = exported["plain"]
    assert path.endswith(os.sep + "1")
    meta = json.loads(open(os.path.join(path, "assets.extra", "metadata.json")).read())
    assert meta["image_shape"] == [8, 8, 3] and meta["training_step"] == 7
    assert meta["max_samples"] == 256
    assert meta["signatures"] == ["complete", "log_likelihood_map", "sample", "serving_default"]
    model = exported["plain"][0]
    assert meta["config"] == json.loads(json.dumps(model.get_config()))  # the model's own
    assert meta["model"] == "PixelCNNpp" and meta["num_classes"] is None
    assert meta["kernel_settings"] == hardware.kernel_settings()  # what it was exported under
    assert not [d for d in os.listdir(os.path.dirname(path)) if d.startswith(".tmp")]


def test_saved_model_cli_show_lists_the_signatures(exported):
    text = saved_model_cli("show", "--all", "--dir", exported["cond"][1])
    # Inputs are declared without a shape (the graph checks them, test below); the image shape
    # is in metadata.json.
    for expected in ("signature_def['serving_default']", "signature_def['sample']",
                     "signature_def['log_likelihood_map']", "signature_def['complete']",
                     "inputs['known']", "DT_BOOL",
                     "inputs['images']", "DT_UINT8", "shape: unknown_rank",
                     "inputs['class_label']", "outputs['bits_per_dim']", "DT_FLOAT",
                     "outputs['log_likelihood']", "inputs['num_samples']", "DT_INT32",
                     "inputs['seed']", "DT_INT64", "outputs['images']"):
        assert expected in text, expected


def test_saved_model_cli_run_computes_bits_per_dim(exported, tmp_path):
    model, path, _ = exported["plain"]
    images = random_images((2, 8, 8, 3), seed=5)
    np.save(tmp_path / "images.npy", images)
    saved_model_cli("run", "--dir", path, "--tag_set", "serve", "--signature_def",
                    "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}",
                    "--outdir", str(tmp_path / "out"))
    got = np.load(tmp_path / "out" / "bits_per_dim.npy")
    np.testing.assert_allclose(got, ops.convert_to_numpy(model.bits_per_dim(images)), rtol=1e-5)


# A serving process: TensorFlow and the SavedModel only (asserted), then, in the same process
# and so under the same kernel settings, the project's API on the Keras model of the export.
FRESH_PROCESS = """
import json, sys, numpy as np, tensorflow as tf
spec = json.loads(sys.argv[1])
KNOWN = np.arange(8)[:, None] * 8 + np.arange(8) < 27  # three rows and three pixels given
images, out = tf.constant(np.load(spec['images'])), {}
for name, export in spec['exports'].items():
    m = tf.saved_model.load(export['path'])
    labels = export['labels']
    kw = {} if labels is None else {'class_label': tf.constant(labels, tf.int32)}
    given = images[..., :export['channels']]
    scores = m.signatures['serving_default'](images=given, **kw)
    out[name + '/map'] = m.signatures['log_likelihood_map'](images=given, **kw)[
        'log_likelihood'].numpy()
    out[name + '/complete'] = m.signatures['complete'](images=given, known=tf.constant(KNOWN),
        seed=tf.constant(5, tf.int64), **kw)['images'].numpy()
    skw = {} if labels is None else {'class_label': tf.constant(labels[0], tf.int32)}
    draw = lambda seed: m.signatures['sample'](num_samples=tf.constant(3),
        seed=tf.constant(seed, tf.int64), **skw)['images'].numpy()
    out.update({name + '/bpd': scores['bits_per_dim'].numpy(),
                name + '/ll': scores['log_likelihood'].numpy(),
                name + '/a': draw(11), name + '/b': draw(11), name + '/c': draw(12)})
assert not [k for k in sys.modules if k.split('.')[0] in ('pixel_cnn_pp', 'pixel_snail')]
sys.path.insert(0, spec['repo'])
import keras
import pixel_cnn_pp.model.pixelcnn  # registers the Keras class of the .keras files
from pixel_cnn_pp.runtime import hardware
for name, export in spec['exports'].items():
    if export['keras']:
        labels = export['labels']
        model = keras.models.load_model(export['keras'])
        out[name + '/api'] = model.sample(
            3, seed=11, class_label=None if labels is None else [labels[0]] * 3)
        out[name + '/api_complete'] = model.complete(
            np.load(spec['images'])[..., :export['channels']], KNOWN, seed=5, class_label=labels)
np.savez(spec['out'], settings=json.dumps(hardware.kernel_settings()), **out)
"""


def serve_in_fresh_process(exports, images, folder, environ=None):
    """FRESH_PROCESS on `exports` {name: (export path, .keras path or None, labels or None)}
    and `images`, in a process started with the environment `environ` (default this one's);
    returns its outputs {name/what: array} and its kernel settings."""
    np.save(folder / "images.npy", images)
    spec = {"repo": str(REPO), "images": str(folder / "images.npy"),
            "out": str(folder / "out.npz"),
            "exports": {name: {"path": str(path), "keras": keras_file and str(keras_file),
                               "labels": labels, "channels": int(images.shape[-1])}
                        for name, (path, keras_file, labels) in exports.items()}}
    environ = dict(os.environ if environ is None else environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, json.dumps(spec)], cwd=folder,
                            env=environ, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(folder / "out.npz") as data:
        out = {k: data[k] for k in data.files}
    return out, json.loads(str(out.pop("settings")))


# The kernel settings a serving process can start with: the operator's environment cleared
# (TensorFlow's default for oneDNN's rewrites depends on the CPU), then that default flipped
# explicitly (TF_ENABLE_ONEDNN_OPTS): both settings, in two processes, on any CPU.
CLEAN = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    """{setting: (outputs, kernel settings)} of the exports served "clean" (both) and
    "flipped" (the unconditional one: the kernels do not depend on the labels; one model less
    to trace)."""
    images = random_images((3, 8, 8, 3), seed=9)
    exports = {name: (path, keras_file, None if model.num_classes is None else [2, 0, 1])
               for name, (model, path, keras_file) in exported.items()}
    out = {"clean": serve_in_fresh_process(exports, images, tmp_path_factory.mktemp("clean"),
                                           dict(CLEAN, KERAS_BACKEND="tensorflow"))}
    flipped = "0" if out["clean"][1]["onednn_in_effect"] is not False else "1"
    out["flipped"] = serve_in_fresh_process(
        {"plain": exports["plain"]}, images, tmp_path_factory.mktemp("flipped"),
        dict(CLEAN, KERAS_BACKEND="tensorflow", TF_ENABLE_ONEDNN_OPTS=flipped))
    return images, out


@pytest.mark.parametrize("name, setting", [("cond", "clean"), ("plain", "clean"),
                                           ("plain", "flipped")])
def test_a_serving_process_returns_the_apis_images_under_the_same_settings(
        exported, served, name, setting):
    """The export's scores equal the Keras model's to float rounding under any kernels; its
    `sample` and `complete` signatures return the API's images for a seed whenever both run
    under the same kernel settings, whatever the import order (to a rare level at a rounding
    boundary: they are two graphs, whose kernels may add in different orders)."""
    model = exported[name][0]
    images, results = served
    out, settings = results[setting]
    labels = None if model.num_classes is None else [2, 0, 1]
    np.testing.assert_allclose(out[f"{name}/bpd"], ops.convert_to_numpy(
        model.bits_per_dim(images, class_label=labels)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[f"{name}/ll"], ops.convert_to_numpy(
        model.log_likelihood(images, class_label=labels)), rtol=1e-5)
    pixels = ops.convert_to_numpy(model.log_likelihood(images, class_label=labels, reduce="pixel"))
    assert out[f"{name}/map"].shape == (3, 8, 8)
    np.testing.assert_allclose(out[f"{name}/map"], pixels, rtol=3e-4)  # graph vs eager kernels
    np.testing.assert_allclose(out[f"{name}/map"].sum((1, 2)), out[f"{name}/ll"], rtol=1e-5)
    completed = out[f"{name}/complete"]
    assert completed.shape == images.shape and completed.dtype == np.uint8
    np.testing.assert_array_equal(completed.reshape(3, 64, 3)[:, :27],
                                  images.reshape(3, 64, 3)[:, :27])
    assert_same_levels(completed, out[f"{name}/api_complete"])
    a = out[f"{name}/a"]
    assert a.shape == (3, 8, 8, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, out[f"{name}/b"])
    assert (a != out[f"{name}/c"]).any()
    assert_same_levels(a, out[f"{name}/api"])
    if setting == "flipped" and results["clean"][1]["onednn_in_effect"] is not None:
        # the explicit setting reached the kernels: the other one than the default's
        assert settings["onednn_in_effect"] is not results["clean"][1]["onednn_in_effect"]


def graph_ops(path):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    ops_used = {node.op for node in graph.node}
    for function in graph.library.function:
        ops_used |= {node.op for node in function.node_def}
    return ops_used


@pytest.mark.parametrize("name", ["plain", "cond"])
def test_exported_graphs_use_only_core_ops(exported, name):
    ops_used = graph_ops(exported[name][1])
    assert not ops_used & PYTHON_CALLBACK_OPS
    registered = set(tf.raw_ops.__dict__)  # every op TensorFlow's C++ core registers
    assert ops_used <= registered, ops_used - registered
    # The sampler is the cached one: a graph loop whose levels are skipped with If, writing
    # one position of its caches per step, with hashed draws (so a seed fixes the images).
    assert {"While", "MatMul", "TensorScatterUpdate", "BitwiseXor", "RightShift"} <= ops_used
    assert ops_used & {"If", "StatelessIf"}
    assert not any(op.startswith("Xla") or "Random" in op for op in ops_used)


def test_bad_inputs_are_refused_by_the_graph(exported):
    model, path, _ = exported["cond"]
    loaded = tf.saved_model.load(path)
    likelihood, sample = loaded.signatures["serving_default"], loaded.signatures["sample"]
    images = tf.constant(random_images((2, 8, 8, 3)))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        likelihood(images=tf.cast(images, tf.float32), class_label=tf.constant([0, 1]))
    for shape in ((2, 4, 4, 3), (2, 8, 8, 1), (8, 8, 3), (0, 8, 8, 3)):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"images must be uint8 \[batch >= 1, 8, 8, 3\]; given shape\] "
                                 + re.escape(f"[{' '.join(map(str, shape))}]")):
            likelihood(images=tf.zeros(shape, tf.uint8), class_label=tf.constant([0, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class_label must be in \[0, 3\)"):
        likelihood(images=images, class_label=tf.constant([0, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"one per image; given shape\] \[1\] \[for a batch of\] \[2\]"):
        likelihood(images=images, class_label=tf.constant([0]))  # not broadcast silently
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"num_samples must be in \[1, 256\]"):
        sample(num_samples=tf.constant(0), seed=tf.constant(1, tf.int64),
               class_label=tf.constant(1))
    complete, seed = loaded.signatures["complete"], tf.constant(1, tf.int64)
    labels = tf.constant([0, 1])
    for shape in ((8, 4), (3, 8, 8), (8,)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
                "known must be bool [8, 8] or [batch, 8, 8]; given shape] "
                f"[{' '.join(map(str, shape))}] [for a batch of] [2]")):
            complete(images=images, known=tf.zeros(shape, tf.bool), seed=seed, class_label=labels)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"seed must be an int64 scalar"):
        complete(images=images, known=tf.ones((8, 8), tf.bool), seed=tf.constant([1, 2], tf.int64),
                 class_label=labels)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class_label must be in \[0, 3\)"):
        loaded.signatures["log_likelihood_map"](images=images, class_label=tf.constant([0, 5]))


@pytest.fixture(scope="module")
def gray_export(tmp_path_factory):
    """The export path of a grayscale model that serves at most 8 images a request."""
    model = small_pixelcnn(image_shape=(8, 8, 1), nr_filters=4, nr_logistic_mix=1)
    return export_model(model, str(tmp_path_factory.mktemp("gray") / "m"), max_samples=8)


def test_a_grayscale_export_refuses_rgb_images_in_the_session_loader(gray_export, tmp_path):
    """saved_model_cli run is TF Serving's loader (a Session, which does not check signature
    shapes): RGB images for a grayscale model are an error there too, not a bits/dim."""
    path = gray_export
    np.save(tmp_path / "rgb.npy", np.zeros((2, 8, 8, 3), np.uint8))
    result = subprocess.run(
        ["saved_model_cli", "run", "--dir", path, "--tag_set", "serve", "--signature_def",
         "serving_default", "--inputs", f"images={tmp_path / 'rgb.npy'}"],
        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300)
    assert result.returncode != 0
    assert "images must be uint8 [batch >= 1, 8, 8, 1]; given shape] [2 8 8 3]" in result.stderr


def test_a_huge_sample_request_is_refused_at_once(gray_export):
    """num_samples above the export's max_samples fails before any allocation: within seconds
    and without growing the process (it once took 22.5 GB before the kernel killed it)."""
    path = gray_export
    assert describe(path)["max_samples"] == 8
    sample = tf.saved_model.load(path).signatures["sample"]
    sample(num_samples=tf.constant(8), seed=tf.constant(1, tf.int64))  # the bound itself works
    known = tf.ones((8, 8), tf.bool)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"images must be at most 8 per request .* given\] \[9\]"):
        tf.saved_model.load(path).signatures["complete"](
            images=tf.zeros((9, 8, 8, 1), tf.uint8), known=known, seed=tf.constant(1, tf.int64))
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.time()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"num_samples must be in \[1, 8\]"):
        sample(num_samples=tf.constant(2_000_000_000), seed=tf.constant(1, tf.int64))
    assert time.time() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_versions_and_overwrite(tmp_path):
    model = small_pixelcnn(image_shape=(4, 4, 1), nr_filters=4, nr_logistic_mix=1)
    root = str(tmp_path / "models")
    assert next_version(root) == 1
    first = export_model(model, root)
    assert os.path.basename(first) == "1" and next_version(root) == 2  # what the next one takes
    stamp = os.path.getmtime(os.path.join(first, "saved_model.pb"))
    with pytest.raises(ExportError, match="exists; pass --overwrite"):
        export_model(model, root, version=1)
    assert os.path.getmtime(os.path.join(first, "saved_model.pb")) == stamp
    os.makedirs(os.path.join(root, "7"))  # a version folder of another export
    assert next_version(root) == 8
    assert export_model(model, root, version=1, overwrite=True) == first
    assert sorted(os.listdir(root)) == ["1", "7"]
    assert os.path.getmtime(os.path.join(first, "saved_model.pb")) != stamp


def test_export_py_cli(run_dir):
    """export.py on a training run: a new version, an existing one refused, a folder that
    holds no run refused (the three command lines in one process)."""
    serve = run_dir / "serve"
    made, exists, nothing = in_one_process("export", [
        [f"--save_dir={run_dir}", f"--export_dir={serve}"],
        [f"--save_dir={run_dir}", f"--export_dir={serve}", "--version=1"],
        [f"--save_dir={run_dir / 'nothing'}"]])
    assert made["exit"] == 0, made
    assert "exported pixel_cnn_pp (step 4, EMA weights)" in made["stdout"]
    assert describe(str(serve / "1"))["training_step"] == 4
    assert exists["exit"].startswith("export.py: error:") and "exists; pass --overwrite" in \
        exists["exit"]
    assert nothing["exit"].startswith("export.py: error:") and "holds no training run" in \
        nothing["exit"]


def test_warmup_requests_replay_against_the_export(exported):
    apis = pytest.importorskip(
        "tensorflow_serving.apis.prediction_log_pb2",
        reason="optional extra [serving]: tensorflow-serving-api pins the full tensorflow "
               "package, so CI does not install it; install it to write warm-up records")
    model, path, _ = exported["cond"]
    records = list(tf.data.TFRecordDataset(os.path.join(path, "assets.extra",
                                                        "tf_serving_warmup_requests")))
    assert len(records) == 1
    log = apis.PredictionLog.FromString(records[0].numpy())
    request = log.predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    out = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.constant(inputs["images"]), class_label=tf.constant(inputs["class_label"]))
    assert out["bits_per_dim"].shape == (1,) and np.isfinite(out["bits_per_dim"].numpy()).all()
