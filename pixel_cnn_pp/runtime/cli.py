"""What train.py and export.py share on the command line: flag spellings of earlier versions,
still accepted with a one-line warning. No TensorFlow here (the CLIs parse flags first)."""
import sys

from absl import flags

from pixel_cnn_pp.errors import ConfigError


def define_old_spelling(old, new, flag_values=flags.FLAGS):
    """Define the string flag `--old` as a deprecated spelling of `--new`; returns (old, new)
    for `apply_old_spellings`."""
    flags.DEFINE_string(old, None, f"Deprecated spelling of --{new}.", flag_values=flag_values)
    return old, new


def apply_old_spellings(program, spellings, flag_values=flags.FLAGS, stream=sys.stderr):
    """For each (old, new) of `spellings` given in its old spelling: one warning line on
    `stream`, and its value becomes --new's. ConfigError naming both if --new was given too,
    with another value."""
    for old, new in spellings:
        if not flag_values[old].present:
            continue
        print(f"{program}: warning: --{old} is deprecated; use --{new}", file=stream)
        value, current = flag_values[old].value, flag_values[new].value
        if flag_values[new].present and current != value:
            raise ConfigError(f"--{old}={value!r} and --{new}={current!r} disagree (--{old} is "
                              f"the old spelling of --{new}); give --{new} only")
        setattr(flag_values, new, value)
