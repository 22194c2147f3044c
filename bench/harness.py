"""What every bench script shares: the set-up before the project's imports (`setup`), the line
that says what a result was measured on (`machine_header`), how a result is reported (`report`),
a git revision's tree for before/after runs (`tree_at`), op times from a tf.profiler trace
(`xspace`, `op_times`) and the model and trainer of a preset on random images (`preset_model`,
`preset_trainer`).

A script runs as `python bench/<name>.py`, so Python finds this module beside it:

    import harness
    harness.setup(onednn=True)  # before the project and TensorFlow are imported

Results are printed, never written to a file: a line naming the command that produced them and
the machine, then markdown table rows. The rows worth keeping are copied into bench/RESULTS.md
by hand.
"""
import datetime
import glob
import os
import platform
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup(onednn=False):
    """The repository root on sys.path (the project's packages, this checkout's), TensorFlow's
    C++ log at warnings where unset and, with `onednn`, oneDNN's rewrites as train.py and
    export.py set them (`hardware.set_onednn_default`): call before anything imports
    TensorFlow, in a script that times what those commands run."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if onednn:
        from pixel_cnn_pp.runtime import hardware
        hardware.set_onednn_default()


def tree_at(rev):
    """The tree of git revision `rev` of this repository in a temporary folder (its own bench/
    and packages): the "before" of a before/after measured in one run."""
    import subprocess
    import tempfile

    folder = tempfile.mkdtemp(prefix="bench_baseline_")
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], capture_output=True)
    if archive.returncode:
        sys.exit(f"bench: error: --baseline={rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return folder


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The first CPU's model name from Linux's `cpuinfo`, else the platform's processor."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_header(frameworks=True):
    """One line on what a result was measured with: the CPU and its cores, Keras and its
    backend, with `frameworks` the backend's version and kernels (TensorFlow: its devices,
    oneDNN rewrites and filter gradient, from `hardware.kernel_settings`; JAX: its device), and
    the date. `frameworks=False` where the results come from other processes, each with its
    own settings."""
    import keras

    backend = keras.backend.backend()
    parts = [f"{cpu_model()}, {os.cpu_count()} cores", f"Keras {keras.__version__} ({backend})"]
    if frameworks and backend == "tensorflow":
        from pixel_cnn_pp.runtime import hardware
        settings = hardware.kernel_settings()
        onednn = {True: "on", False: "off", None: "unknown"}[settings["onednn_in_effect"]]
        parts += [f"TF {settings['tensorflow_version']} on {'+'.join(settings['devices'])}",
                  f"oneDNN rewrites {onednn}", f"filter gradient {settings['filter_gradient']}"]
    elif frameworks and backend == "jax":
        import jax
        parts.append(f"JAX {jax.__version__} on {jax.devices()[0].device_kind}")
    parts.append(datetime.date.today().isoformat())
    return ", ".join(parts)


def command():
    """The command line of this process, as run from the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join(["python", shlex.quote(script), *map(shlex.quote, sys.argv[1:])])


def report(what, lines, machine=None):
    """Print a result: "`command` (machine): what", then `lines` (markdown: tables and the notes
    under them). `machine` defaults to `machine_header()`."""
    print(f"\n`{command()}` ({machine or machine_header()}): {what}\n")
    print("\n".join(lines), flush=True)


def op_times(space):
    """{op type: (seconds, count)} from the host plane of a trace (an XSpace)."""
    import collections

    totals = collections.defaultdict(lambda: [0.0, 0])
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor threads
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")  # "op name:OpType" for TF ops
                if ":" not in name or "::" in name:
                    continue
                kind = name.rsplit(":", 1)[1]
                totals[kind][0] += event.duration_ps * 1e-12
                totals[kind][1] += 1
    return totals


def xspace(logdir):
    """The XSpace of the trace that tf.profiler wrote under `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    return space


def preset_model(preset, image_size=0, **overrides):
    """A built model of a preset with dropout off, data-dependently initialised on 16 random
    images of the preset dataset's shape (`image_size` x `image_size` if set); `overrides`
    are model flags {name: value} (0 or None: the preset's)."""
    import numpy as np

    from pixel_cnn_pp.model.registry import build_model
    from pixel_cnn_pp.runtime.config import DATASET_SHAPES, from_preset

    config, dataset, _ = from_preset(preset, dropout_p=0.0,
                                     **{k: v for k, v in overrides.items() if v})
    shape = DATASET_SHAPES[dataset]
    if image_size:
        shape = (image_size, image_size, shape[-1])
    model = build_model(config.model, shape, **config.model_options)
    model.build_all()
    model.initialize(np.random.RandomState(0).randint(0, 256, (16, *shape), np.uint8))
    return model


def preset_trainer(preset, batch_size, image_size=0, init_batch_size=0, **overrides):
    """(Trainer, one global batch) of a preset on one device, on random images of the preset
    dataset's shape (`image_size` x `image_size` if set; no download), initialised on
    `init_batch_size` images (0: the batch size); `overrides` are flags {name: value}."""
    import numpy as np
    import tensorflow as tf

    from pixel_cnn_pp.runtime import data
    from pixel_cnn_pp.runtime.config import DATASET_SHAPES, from_preset
    from pixel_cnn_pp.runtime.trainer import Trainer

    config, dataset_name, _ = from_preset(preset, batch_size=batch_size,
                                          init_batch_size=init_batch_size or batch_size,
                                          **overrides)
    shape = DATASET_SHAPES[dataset_name]
    if image_size:
        shape = (image_size, image_size, shape[-1])
    images = np.random.RandomState(0).randint(0, 256, (batch_size * 2, *shape), np.uint8)
    fake = data.from_arrays("random", images, np.zeros(len(images)), batch_size, 10)
    trainer = Trainer(config, fake, tf.distribute.OneDeviceStrategy("/cpu:0"),
                      "/tmp/bench_unused", log=lambda *_: None)
    trainer.restore_or_initialize()
    return trainer, next(iter(trainer.distribute(fake.train, None)))
