"""The dependency rule of the tree: model code is backend-portable (it imports without
TensorFlow), the runtime never is imported by it, and models are found through the registry."""
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO

PORTABLE = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts)
    for folder in ("pixel_cnn_pp/model", "pixel_snail")
    for path in (REPO / folder).glob("*.py"))

# Make `import tensorflow` fail, then import every model module and build both models with
# the JAX backend; the registry finds them through the package's entry points.
NO_TENSORFLOW = """
import importlib, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("TensorFlow is not importable in this test")
sys.meta_path.insert(0, Refuse())
for name in sys.argv[1:]:
    importlib.import_module(name)
from pixel_cnn_pp.model.registry import build_model
for name in ("pixel_cnn_pp", "pixel_snail"):
    model = build_model(name, (4, 4, 3), nr_resnet=1, nr_filters=4, nr_logistic_mix=1)
    model.build_all()
assert "tensorflow" not in sys.modules
print("PORTABLE_OK")
"""


def test_model_modules_import_and_build_without_tensorflow():
    pytest.importorskip("jax", reason="jax is a test extra: pip install -e .[test]")
    assert "pixel_cnn_pp.model.pixelcnn" in PORTABLE and "pixel_snail.model" in PORTABLE
    env = {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO),
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, *PORTABLE], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PORTABLE_OK" in result.stdout


def test_model_code_never_imports_the_runtime_or_tensorflow_at_module_level():
    for name in PORTABLE:
        source = (REPO / pathlib.Path(*name.split("."))).with_suffix(".py").read_text()
        top_level = [line for line in source.splitlines()
                     if line.startswith(("import ", "from "))]
        for line in top_level:
            assert "tensorflow" not in line and "pixel_cnn_pp.runtime" not in line, (name, line)
