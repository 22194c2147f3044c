"""runtime/hardware.py: the CPU flags, the choices made from them, the oneDNN default and the
kernel settings an export records (fake cpuinfo files), and that the import order of
TensorFlow and this project changes no process's kernels."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from pixel_cnn_pp.model import conv
from pixel_cnn_pp.runtime import hardware
from processes import PORTABLE

AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nprocessor\t: 1\nflags\t\t: fpu\n"


@pytest.mark.parametrize("text, devices, expected", [
    (AVX2, ["cpu"], "products"),                                            # AVX2 only
    (AVX2, ["cpu", "gpu"], "backend"),                                      # a GPU does the work
    ("flags\t\t: fpu avx avx2 avx512f avx512bw\n", ["cpu"], "backend"),     # AVX-512
    ("flags\t\t: fpu sse2 avx\n", ["cpu"], "backend"),                      # neither
    ("Features\t: fp asimd sve\n", ["cpu"], "backend"),                     # no flags line (arm64)
    (None, ["cpu"], "backend"),                                             # unreadable
])
def test_filter_gradient_follows_the_cpu_flags_and_devices(tmp_path, text, devices, expected):
    path = tmp_path / "cpuinfo"
    if text is not None:
        path.write_text(text)
    assert hardware.filter_gradient_for_this_machine(str(path), devices) == expected


def test_cpu_flags_are_the_first_cpus(tmp_path):
    (tmp_path / "cpuinfo").write_text(AVX2)
    assert hardware.cpu_flags(str(tmp_path / "cpuinfo")) == {"fpu", "sse2", "avx", "avx2", "fma"}


def test_choose_filter_gradient_keeps_a_setting_made_by_hand(monkeypatch):
    monkeypatch.setattr(hardware, "filter_gradient_for_this_machine", lambda: "products")
    monkeypatch.setattr(conv, "FILTER_GRADIENT", conv.DEFAULT_FILTER_GRADIENT)
    assert hardware.choose_filter_gradient() == "products" == conv.FILTER_GRADIENT
    monkeypatch.setattr(hardware, "filter_gradient_for_this_machine", lambda: "backend")
    assert hardware.choose_filter_gradient() == "products"  # set before: kept


def test_onednn_default_is_set_only_where_unset(monkeypatch):
    environ = {}
    assert hardware.set_onednn_default(environ) == "1" and environ == {hardware.ONEDNN: "1"}
    environ = {hardware.ONEDNN: "0"}
    assert hardware.set_onednn_default(environ) == "0" and environ == {hardware.ONEDNN: "0"}
    # This process has started TensorFlow (conftest): its environment is left as it is.
    monkeypatch.delenv(hardware.ONEDNN, raising=False)
    assert hardware.set_onednn_default() is None and hardware.ONEDNN not in os.environ


def test_kernel_settings_and_how_to_serve_under_them(tmp_path, monkeypatch):
    monkeypatch.delenv(hardware.ONEDNN, raising=False)
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=2")
    settings = hardware.kernel_settings()
    assert json.loads(json.dumps(settings)) == settings
    assert settings[hardware.ONEDNN] is None and settings["TF_XLA_FLAGS"] == "--tf_xla_auto_jit=2"
    assert settings["keras_backend"] == "tensorflow" and settings["devices"] == ["cpu"]
    assert isinstance(settings["onednn_in_effect"], bool)  # TensorFlow 2.21 answers
    assert settings["cpu_flags"] == {flag: flag in hardware.cpu_flags()
                                     for flag in ("avx2", "avx512f", "amx_bf16")}
    # A serving process gets oneDNN as it was in effect, whatever its machine's default.
    from pixel_cnn_pp.runtime import export
    version = tmp_path / "export" / "1"
    (version / "assets.extra").mkdir(parents=True)
    for onednn, value in ((False, "0"), (True, "1")):
        meta = {"kind": "pixel_cnn_pp", "kernel_settings": dict(settings, onednn_in_effect=onednn)}
        (version / export.METADATA_FILE).write_text(json.dumps(meta))
        lines = export.describe_lines(str(version))
        assert json.loads(lines[0]) == meta
        assert lines[-1].strip() == (
            f"{hardware.ONEDNN}={value} TF_XLA_FLAGS=--tf_xla_auto_jit=2 tensorflow_model_server "
            f"--model_name=pixel_cnn_pp --model_base_path={tmp_path / 'export'} "
            "--rest_api_port=8501")


@pytest.mark.parametrize("policy, devices, flags, hinted", [
    ("float32", ["/job:localhost/replica:0/task:0/device:CPU:0"], "avx512f amx_bf16 amx_tile", True),
    ("mixed_bfloat16", ["/device:CPU:0"], "avx512f amx_bf16", False),      # already bfloat16
    ("float32", ["/device:CPU:0", "/device:CPU:1"], "avx512f avx512_bf16", False),  # no AMX
    ("float32", ["/device:GPU:0"], "avx512f amx_bf16", False),             # the GPU does the work
])
def test_bfloat16_hint_only_for_float32_on_amx_cpus(tmp_path, policy, devices, flags, hinted):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n")
    hint = hardware.bfloat16_hint(policy, devices, str(cpuinfo))
    assert (hint is not None) is hinted
    if hinted:
        assert "--mixed_precision=mixed_bfloat16" in hint


# The kernels a process runs do not depend on whether it imported TensorFlow or this project
# first, and a child process inherits the same: importing the project sets nothing.
IMPORT_ORDER = """
import importlib, json, os, subprocess, sys
order = sys.argv[1]
before = dict(os.environ)
if order == "project first":
    import pixel_cnn_pp
    assert dict(os.environ) == before, "importing pixel_cnn_pp changed the environment"
import tensorflow  # it sets variables of its own
after_tensorflow = dict(os.environ)
for name in sys.argv[2:]:
    importlib.import_module(name)
changed = set(os.environ.items()) ^ set(after_tensorflow.items())
assert not changed, f"importing the project changed the environment: {changed}"
from pixel_cnn_pp.runtime import hardware
child = subprocess.run([sys.executable, "-c", "from pixel_cnn_pp.runtime import hardware; "
                        "print(hardware.onednn_in_effect())"], capture_output=True, text=True)
print("KERNELS" + json.dumps([os.environ.get(hardware.ONEDNN), hardware.onednn_in_effect(),
                              child.stdout.split()[-1]]))
"""


def test_import_order_changes_neither_the_environment_nor_the_kernels():
    env = {k: v for k, v in os.environ.items() if k != hardware.ONEDNN}  # TensorFlow's default
    env.update(TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", PYTHONPATH=str(REPO))
    kernels = {}
    for order in ("tensorflow first", "project first"):
        result = subprocess.run([sys.executable, "-c", IMPORT_ORDER, order, *PORTABLE], cwd=REPO,
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        variable, here, child = json.loads(result.stdout.split("KERNELS", 1)[1])
        assert variable is None  # nothing set it
        assert str(here) == child, (order, here, child)  # the child runs the same kernels
        kernels[order] = here
    assert kernels["tensorflow first"] == kernels["project first"]
