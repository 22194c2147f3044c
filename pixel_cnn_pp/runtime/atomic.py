"""Atomic file output: nothing half-written is ever left under a final name."""
import json
import os
import shutil

import numpy as np
import tensorflow as tf


def write_atomic(path, data):
    """Write bytes (or str) to `path` through a temporary file in the same folder and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def save_npy(path, array):
    tmp = f"{path}.tmp-{os.getpid()}.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def save_png(path, image):
    """uint8 (H, W, C) as a PNG file."""
    write_atomic(path, tf.io.encode_png(image).numpy())


def replace_dir(tmp_dir, final_dir):
    """Rename a fully written `tmp_dir` to `final_dir` (same file system); an existing
    `final_dir` is moved aside first and deleted only once the new one is in place."""
    old = None
    if os.path.exists(final_dir):
        old = f"{final_dir}.old-{os.getpid()}"
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old:
        shutil.rmtree(old)


def check_writable_dir(path, flag, error):
    """Refuse, before any work, a folder that cannot be written: a file, or a folder (or its
    nearest existing parent) without write permission. `error`: the UserError class to raise."""
    if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
        raise error(f"--{flag}={path!r} is a file, not a folder")
    if "://" in path:  # remote storage (gs://...): the first write reports its permissions
        return
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise error(f"--{flag}={path!r} cannot be created: {probe!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise error(f"--{flag}={path!r} is not writable ({probe!r}: permission denied)")


def pid_alive(pid):
    """Whether a process `pid` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True
