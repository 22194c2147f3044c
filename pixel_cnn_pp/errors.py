"""The project's one error hierarchy.

`UserError` is bad input a user can fix: a flag, a file, a dataset, a checkpoint, a model option.
The CLIs print it as one line and exit non-zero; anything else is a bug and keeps its traceback.
It derives from ValueError so that model constructors keep Keras's convention (a bad argument is
a ValueError) while the CLIs can still tell a user's mistake from an internal one.
"""


class UserError(ValueError):
    """Bad input; the message is one line naming the bad value."""


class ConfigError(UserError):
    """A model or training option is out of range or does not fit the others."""


class DataError(UserError):
    """A dataset cannot be read or does not fit the run."""


class CheckpointError(UserError):
    """A save dir, checkpoint or TF1 checkpoint is missing, unreadable or does not fit."""


class ExportError(UserError):
    """A SavedModel cannot be written where asked."""


class TrainingError(UserError):
    """Training cannot go on (a non-finite loss); the last good checkpoint is kept."""
