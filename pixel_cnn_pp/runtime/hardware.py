"""Hardware policy, in one place: which kernels a process runs (oneDNN's rewrites, the filter
gradient of `model/conv.py`), the bfloat16 hint, and the kernel settings an export records.

No TensorFlow import at module level: `set_onednn_default` must act before TensorFlow starts.
The model packages decide nothing about the machine; the CLIs and benchmarks call, in order:

    hardware.set_onednn_default()     # first thing, before anything imports TensorFlow
    hardware.choose_filter_gradient()  # once TensorFlow is importable

A process that calls neither (a notebook, a serving process) runs TensorFlow's defaults and its
environment's TF_ENABLE_ONEDNN_OPTS, and the backend's own filter gradient.
"""
import functools
import os
import shlex
import sys

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
# The CPU flags that decide TensorFlow's oneDNN default (on with AVX-512 or AMX) and this
# module's choices; `kernel_settings` records them.
DECIDING_FLAGS = ("avx2", "avx512f", "amx_bf16")


@functools.cache
def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The first CPU's feature flags from Linux's `cpuinfo`, as a frozenset; empty where they
    cannot be read (other systems; arm64's line is named "Features")."""
    try:
        with open(cpuinfo) as f:
            return frozenset(next((line.split(":", 1)[1].split() for line in f
                                   if line.startswith("flags")), []))
    except OSError:
        return frozenset()


def set_onednn_default(environ=os.environ):
    """Set TF_ENABLE_ONEDNN_OPTS=1 in `environ` where it is unset; returns the value in effect
    (None: TensorFlow's own default).

    oneDNN's graph rewrites (convolutions fused with their bias, oneDNN kernels for convolutions
    and matmuls) made a training step 1.4x faster on an AVX2 CPU, where TensorFlow leaves them
    off; on AVX-512 or AMX CPUs they are its default already (bench/RESULTS.md). No effect on
    GPUs or the JAX backend. A value set by the user ("0" included) is kept.

    `environ` is the environment of the process that will start TensorFlow: a dict for a child
    process, or this process's `os.environ`. TensorFlow reads the variable once, when it starts:
    if it is already imported here, this process keeps what it started with and `os.environ` is
    left alone (a changed value would reach only its children, which would then run other
    kernels than this process).
    """
    if environ is os.environ and "tensorflow" in sys.modules:
        return environ.get(ONEDNN)
    return environ.setdefault(ONEDNN, "1")


def device_kinds():
    """Sorted kinds ("cpu", "gpu", "tpu") of the devices the Keras backend computes on. On
    TensorFlow the physical devices, which can be listed before a tf.distribute strategy or
    logical CPU devices are set up (listing the logical ones would fix the devices too early)."""
    import keras
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        return sorted({d.device_type.lower() for d in tf.config.list_physical_devices()})
    # Keras lists the accelerators where there are any, else the CPUs.
    return sorted({d.split(":")[0].lower() for d in keras.distribution.list_devices()})


def filter_gradient_for_this_machine(cpuinfo="/proc/cpuinfo", devices=None):
    """"products" where the backend computes on CPUs only (`devices`: their kinds, default
    `device_kinds()`) and the CPU has AVX2 but not AVX-512, else "backend".

    Measured (bench/RESULTS.md): on a 2-core AVX2 CPU the products made a training step 1.1x
    faster; on AVX-512 CPUs oneDNN's Conv2DBackpropFilter runs at the forward convolution's
    speed and the products do not beat it; on an H100 they ran at 0.85x cuDNN's speed.
    """
    devices = device_kinds() if devices is None else devices
    flags = cpu_flags(cpuinfo)
    products = (all(kind == "cpu" for kind in devices) and "avx2" in flags
                and "avx512f" not in flags)
    return "products" if products else "backend"


def choose_filter_gradient():
    """Set `conv.FILTER_GRADIENT` to `filter_gradient_for_this_machine()` unless it was set
    before (to anything but its default, "backend"); returns the value in effect. To force
    "backend" where this would choose the products, set it after this call."""
    from pixel_cnn_pp.model import conv
    if conv.FILTER_GRADIENT == conv.DEFAULT_FILTER_GRADIENT:
        conv.FILTER_GRADIENT = filter_gradient_for_this_machine()
    return conv.FILTER_GRADIENT


def bfloat16_hint(policy, devices, cpuinfo="/proc/cpuinfo"):
    """One line for a float32 run on CPUs whose AMX multiplies bfloat16 (a step 2.2x faster with
    --mixed_precision=mixed_bfloat16 on a 2-core Xeon, bench/RESULTS.md), else None. `devices`:
    the names of the devices the run computes on. A hint, not a default: bfloat16 is not the
    original's arithmetic."""
    on_cpus = all("CPU" in d.upper().rsplit("/", 1)[-1] for d in devices)
    if policy != "float32" or not on_cpus or "amx_bf16" not in cpu_flags(cpuinfo):
        return None
    return ("this CPU has AMX: --mixed_precision=mixed_bfloat16 trains about 2x faster here "
            "(bfloat16 products, float32 variables and loss; not the original's arithmetic)")


def onednn_in_effect():
    """Whether this process's TensorFlow runs oneDNN's rewrites (TensorFlow's private
    `IsMklEnabled`, which applies TF_ENABLE_ONEDNN_OPTS and the CPU's default); None where that
    function is missing or TensorFlow is not installed."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def kernel_settings(cpuinfo="/proc/cpuinfo"):
    """The settings that decide this process's kernels, as a JSON-serialisable dict:
    keras_backend, tensorflow_version (None without TensorFlow), TF_ENABLE_ONEDNN_OPTS and
    TF_XLA_FLAGS as set in the environment (None: unset), onednn_in_effect (see
    `onednn_in_effect`), filter_gradient (`conv.FILTER_GRADIENT`), devices (`device_kinds`) and
    cpu_flags {flag: present} of `DECIDING_FLAGS`."""
    import keras

    from pixel_cnn_pp.model import conv
    try:
        import tensorflow as tf
        version = tf.__version__
    except ImportError:
        version = None
    flags = cpu_flags(cpuinfo)
    return {"keras_backend": keras.backend.backend(), "tensorflow_version": version,
            ONEDNN: os.environ.get(ONEDNN), "onednn_in_effect": onednn_in_effect(),
            "TF_XLA_FLAGS": os.environ.get("TF_XLA_FLAGS"),
            "filter_gradient": conv.FILTER_GRADIENT, "devices": device_kinds(),
            "cpu_flags": {flag: flag in flags for flag in DECIDING_FLAGS}}


def serving_environment(settings):
    """The environment assignments ("NAME=value" strings) that give a serving process the
    kernels `settings` (a `kernel_settings` dict) records: oneDNN on or off explicitly (the
    serving machine's default may differ from the exporting one's), and TF_XLA_FLAGS if set."""
    onednn = settings.get("onednn_in_effect")
    value = settings.get(ONEDNN) if onednn is None else ("1" if onednn else "0")
    assignments = [] if value is None else [f"{ONEDNN}={value}"]
    if settings.get("TF_XLA_FLAGS"):
        assignments.append(f"TF_XLA_FLAGS={shlex.quote(settings['TF_XLA_FLAGS'])}")
    return assignments
