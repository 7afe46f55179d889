"""Errors that speak to the user: what was wrong, where, and what to do."""


class ConfigError(ValueError):
    """A configuration mistake found before any training starts.

    The message always names the offending key and a fix, e.g. ``optimizer.lr=1e-3``.
    """

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"config key `{key}`: {problem}\n  fix: {fix}")


class DataError(ValueError):
    """The data cannot be used at all (no classes, no usable images in a split, ...)."""


class WeightsError(RuntimeError):
    """Pretrained or local weights could not be obtained or do not fit the backbone."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, damaged, not a visiontrain checkpoint, or holding settings we refuse.

    Raised before anything from the file is built, so a damaged or hostile checkpoint ends in one clear message.
    """


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (read-only or full run dir): training stops once, saying where and why."""
