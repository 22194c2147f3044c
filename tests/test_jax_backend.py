"""The model code on the JAX backend, all in one fresh process (`KERAS_BACKEND=jax`) in which
TensorFlow cannot be imported: every model module imports and builds without it and without
touching the environment, both models reproduce the original's numbers, the stateless training
step equals the TensorFlow trainer's step, and the jitted cached sampler equals the naive one.
One process: JAX's start-up and compilations are paid once."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, random_images
from processes import PORTABLE
from pixel_cnn_pp.model.registry import build_model
from pixel_cnn_pp.model.train_step import TrainStep

pytest.importorskip("jax", reason="jax is a test extra: pip install -e .[test]")

# Run first, with `import tensorflow` refused for the whole process.
PRELUDE = """
import importlib, json, os, sys, time, traceback
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("TensorFlow is not importable in this process")
sys.meta_path.insert(0, Refuse())
sys.path.insert(0, "tests")
spec = json.loads(sys.argv[1])
import jax, keras  # they set variables of their own when imported
assert keras.backend.backend() == "jax"
environ = dict(os.environ)
for name in spec["modules"]:
    importlib.import_module(name)
RESULTS, SHARED = {}, {}  # SHARED: models a section leaves for later ones
def section(name, source):
    start = time.perf_counter()
    try:
        exec(source, {"spec": spec, "environ": environ, "shared": SHARED})
        RESULTS[name] = "ok"
    except BaseException:
        RESULTS[name] = traceback.format_exc()
    print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
"""

SECTIONS = {}

# PixelCNN++: data-dependent init, forward pass and loss against the original's fixture.
SECTIONS["pixelcnn_original"] = """
import numpy as np
from keras import ops
from models import load_fixture
from pixel_cnn_pp.model.pixelcnn import PixelCNNpp
from pixel_cnn_pp.model.tf1_names import tf1_variable_names
fx = load_fixture('pixelcnn_small')
model = PixelCNNpp((8, 8, 3), nr_resnet=1, nr_filters=16, nr_logistic_mix=3, dropout_p=0.0)
model.build_all()
names = tf1_variable_names(model)
for n, v in names.items():
    v.assign(fx.get('pre_ddi/' + n, fx['var/' + n]))
model.initialize(fx['x_init_uint8'])
for n, v in names.items():
    np.testing.assert_allclose(ops.convert_to_numpy(v), fx['var/' + n], rtol=1e-4, atol=1e-5)
out = ops.convert_to_numpy(model(fx['x']))
np.testing.assert_allclose(out, fx['out_train'], rtol=1e-4, atol=1e-4 * np.abs(out).max())
loss = float(ops.sum(model.nll(fx['x'])))
np.testing.assert_allclose(loss, fx['loss_train_nats'], rtol=1e-4)
"""

# PixelSNAIL, found by the registry through the package's entry points: forward pass and
# loss against the original's fixture.
SECTIONS["snail_original"] = """
import numpy as np
from keras import ops
from models import load_fixture
from pixel_cnn_pp.model.registry import build_model
from pixel_cnn_pp.model.tf1_names import tf1_variable_names
fx = load_fixture('pixelsnail_small_q8')
model = build_model("pixel_snail", (8, 8, 3), nr_resnet=1, nr_filters=16, nr_logistic_mix=3,
                    dropout_p=0.0, attn_rep=1, key_size=8, query_size=8)  # through the registry
model.build_all()
for n, v in tf1_variable_names(model).items():
    v.assign(fx['var/' + n])
out = ops.convert_to_numpy(model(fx['x']))
np.testing.assert_allclose(out, fx['out_train'], rtol=1e-4, atol=1e-4 * np.abs(out).max())
loss = float(ops.sum(model.nll(fx['x'])))
np.testing.assert_allclose(loss, fx['loss_train_nats'], rtol=1e-4)
"""

# The pure step of the JAX benchmark, jitted, from the TensorFlow step's starting point: two
# steps give the TensorFlow trainer's loss, weights and Polyak averages.
SECTIONS["train_step"] = """
import numpy as np, jax
from pixel_cnn_pp.model.registry import build_model
from pixel_cnn_pp.model.train_step import TrainStep
step_spec = spec["train_step"]
data = np.load(step_spec["path"])
model = build_model("pixel_cnn_pp", (8, 8, 3), num_classes=3, **step_spec["options"])
model.build_all()
step = TrainStep(model, **step_spec["settings"])
for k, v in enumerate(model.trainable_variables):
    v.assign(data[f"w{k}"])
for k, s in enumerate(step.ema.shadows):
    s.assign(data[f"s{k}"])
jitted = jax.jit(step.stateless_step)  # compiled once, for both steps
state, loss = jitted(step.state(), data["images"], data["labels"])
state, loss = jitted(state, data["images"], data["labels"])
shared["pixelcnn"] = model  # the TensorFlow trainer's starting weights, for the samplers
np.testing.assert_allclose(float(loss), float(data["loss"]), rtol=1e-5)
diffs = np.concatenate([np.abs(np.asarray(v) - data[f"{kind}_after{k}"]).ravel()
                        for kind, values in (("w", state[0]), ("s", state[3]))
                        for k, v in enumerate(values)])
assert diffs.max() < 5e-5 and np.mean(diffs > 1e-6) < 0.01, (diffs.max(), np.mean(diffs > 1e-6))
"""

# The samplers under jax.jit (variables through a StatelessScope), on the class-conditional
# PixelCNN++ of the training step with the TensorFlow trainer's starting weights: cached images
# equal naive ones, so the cached network's steps compute the full network's outputs (pixel by
# pixel, test_sampling.py checks that on TensorFlow for every model); the likelihood's
# reductions agree; a rounded sample's prefix completes to it.
SECTIONS["sampling"] = """
import numpy as np
from keras import ops
from models import assert_same_images, random_images
from pixel_cnn_pp.model import sampling
model, labels = shared["pixelcnn"], np.array([1, 2], np.int32)
cached = ops.convert_to_numpy(sampling.continuous(model, 2, 7, labels, 'cached'))
assert_same_images(cached, ops.convert_to_numpy(sampling.continuous(model, 2, 7, labels, 'naive')))
images = random_images((2, 8, 8, 3), seed=3)
pixel = np.asarray(model.log_likelihood(images, labels, reduce="pixel"))
subpixel = np.asarray(model.log_likelihood(images, labels, reduce="subpixel"))
np.testing.assert_allclose(pixel.sum(axis=(1, 2)), model.log_likelihood(images, labels), rtol=1e-4)
np.testing.assert_allclose(subpixel.sum(axis=-1), pixel, rtol=1e-4, atol=1e-5)
drawn = model.sample(2, seed=7, rounded=True, class_label=labels)
known = np.zeros(model.image_shape[:2], bool)
known[:3] = True
np.testing.assert_array_equal(model.complete(drawn, known, seed=7, class_label=labels), drawn)
"""

# PixelSNAIL's code maps (categorical outputs, attention over the pixels so far) conditioned on
# a code map and a class, on JAX: the jitted cached sampler draws the naive sampler's codes;
# the 81 maps of 3 codes under a feature condition sum to 1.
SECTIONS["discrete"] = """
import itertools
import numpy as np
from models import code_prior
model, batch = code_prior(True, num_codes=5, size=4, condition="codes", num_classes=3)
given = dict(condition=batch["condition"][:3], class_label=batch["class_label"][:3])
cached = model.sample(3, seed=4, **given)
np.testing.assert_array_equal(cached, model.sample(3, seed=4, method="naive", **given))
assert cached.dtype == np.int32 and len(np.unique(cached)) > 2
model, batch = code_prior(True, num_codes=3, size=2, condition="features")
maps = np.array(list(itertools.product(range(3), repeat=4)), np.int32).reshape(-1, 2, 2)
logs = np.asarray(model.log_likelihood(maps, condition=np.repeat(batch["condition"][:1], 81, 0)))
assert abs(np.exp(logs.astype(np.float64)).sum() - 1) < 1e-4
"""

# Gradient checkpointing under jax.checkpoint, on PixelSNAIL (its gated resnets are
# PixelCNN++'s, recomputed the same way; test_remat.py checks both models on TensorFlow): the
# same loss and gradients as without it, with dropout active (the recomputed blocks apply the
# masks drawn in the forward pass).
SECTIONS["remat"] = """
import jax
import keras
import numpy as np
from pixel_cnn_pp.model.levels import images_to_float
from pixel_snail.model import PixelSNAIL
images = np.random.RandomState(1).randint(0, 256, (2, 8, 8, 3)).astype(np.uint8)
x = images_to_float(images)
results = []
for remat in (False, True):
    keras.utils.set_random_seed(0)
    model = PixelSNAIL(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=8, nr_logistic_mix=2,
                       dropout_p=0.5, remat=remat, attn_rep=1, key_size=4)
    model.initialize(images)
    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]

    def loss(values):
        params, _ = model.stateless_call(values, fixed, x, training=True)
        return -model.distribution.log_prob(x, params).sum()

    results.append(jax.jit(jax.value_and_grad(loss))(trainable))
(plain_loss, plain), (remat_loss, recomputed) = results
assert abs(float(remat_loss) - float(plain_loss)) < 1e-5 * abs(float(plain_loss))
for a, b in zip(plain, recomputed):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(b, a, rtol=0, atol=2e-4 * max(np.abs(a).max(), 1e-3))
"""

# Last, after every section has built and run both models: nothing imported TensorFlow (the
# model modules imported above, before any section) and nothing changed the environment.
SECTIONS["portable"] = """
import os, sys
assert "tensorflow" not in sys.modules
assert dict(os.environ) == environ, set(os.environ.items()) ^ set(environ.items())
"""

# Training-step settings. Adam's first steps are lr * g / sqrt(g^2 + eps): with the original's
# eps 1e-8 a gradient that cancels to ~1e-4 turns float noise of the sum (the backends'
# convolutions add in different orders) into differences of order lr. A larger eps keeps the
# update a smoother function of the gradient: measured, all but a few of ~2,000 values agree to
# 1e-6, the worst to 1.4e-5. A strong lr decay makes a wrong decay, epsilon, bias correction or
# Polyak rate show at 1e-4 and above.
STEP_OPTIONS = dict(nr_resnet=1, nr_filters=8, nr_logistic_mix=2, dropout_p=0.0)
STEP_SETTINGS = dict(learning_rate=3e-3, lr_decay=0.5, adam_epsilon=1e-2, polyak_decay=0.9)


def tensorflow_steps(path):
    """Two TensorFlow steps of a class-conditional PixelCNN++ (tape, Adam, Polyak), saved to
    `path`: the images, labels, the weights and averages before and after, the last loss."""
    keras.utils.set_random_seed(0)
    model = build_model("pixel_cnn_pp", (8, 8, 3), num_classes=3, **STEP_OPTIONS)
    model.build_all()
    step = TrainStep(model, **STEP_SETTINGS)
    images = random_images((4, 8, 8, 3), seed=5)
    labels = np.array([0, 2, 1, 0], np.int32)
    model.initialize(images, class_label=labels)
    saved = {f"w{k}": v.numpy() for k, v in enumerate(model.trainable_variables)}
    saved.update({f"s{k}": s.numpy() for k, s in enumerate(step.ema.shadows)})
    for _ in range(2):  # two steps: the bias corrections and the decayed rate both move
        with tf.GradientTape() as tape:
            loss = step.loss(images, labels)
        step.apply(tape.gradient(loss, model.trainable_variables))
        step.update_average()
    saved.update({f"w_after{k}": v.numpy() for k, v in enumerate(model.trainable_variables)})
    saved.update({f"s_after{k}": s.numpy() for k, s in enumerate(step.ema.shadows)})
    moved = max(np.abs(saved[f"w_after{k}"] - saved[f"w{k}"]).max() for k in range(3))
    assert moved > 1e-3  # the steps changed the weights, so the comparison means something
    np.savez(path, images=images, labels=labels, loss=float(loss), **saved)


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    """{section: "ok" or its traceback} of one JAX process running every SECTION."""
    path = str(tmp_path_factory.mktemp("jax") / "step.npz")
    tensorflow_steps(path)
    spec = {"modules": PORTABLE,
            "train_step": {"path": path, "options": STEP_OPTIONS, "settings": STEP_SETTINGS}}
    script = PRELUDE + "".join(f"section({name!r}, {source!r})\n"
                               for name, source in SECTIONS.items())
    script += "print('RESULTS' + json.dumps(RESULTS))\n"
    env = {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # nothing else inherited
    result = subprocess.run([sys.executable, "-c", script, json.dumps(spec)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and "RESULTS" in result.stdout, result.stderr[-3000:]
    return json.loads(result.stdout.split("RESULTS", 1)[1])


@pytest.mark.parametrize("name", list(SECTIONS))
def test_on_the_jax_backend(jax_results, name):
    assert jax_results[name] == "ok", jax_results[name]


def test_every_model_module_is_checked():
    assert "pixel_cnn_pp.model.pixelcnn" in PORTABLE and "pixel_snail.model" in PORTABLE
    assert "pixel_cnn_pp" in PORTABLE  # the package itself: no environment changes either
