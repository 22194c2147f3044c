"""The dependency rule of the tree: model code never imports the runtime or TensorFlow at module
level (that it imports and builds without TensorFlow at all: tests/test_jax_backend.py)."""
import pathlib

from conftest import REPO
from processes import PORTABLE


def test_model_code_never_imports_the_runtime_or_tensorflow_at_module_level():
    for name in PORTABLE:
        path = REPO / pathlib.Path(*name.split("."))
        source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()
        top_level = [line for line in source.splitlines()
                     if line.startswith(("import ", "from "))]
        for line in top_level:
            assert "tensorflow" not in line and "pixel_cnn_pp.runtime" not in line, (name, line)
