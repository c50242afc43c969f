"""The toolkit's own error types: every user-facing failure is one of these, with a message
that names the file or argument at fault and what to do about it."""


class TorchDiffusionError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class ConfigError(TorchDiffusionError, ValueError):
    """An impossible or inconsistent configuration or argument."""


class DataError(TorchDiffusionError):
    """A dataset that cannot be used (missing folder, no readable images, ...)."""


class CheckpointError(TorchDiffusionError):
    """A checkpoint folder that is missing, corrupt, or belongs to another model."""


class MissingDependencyError(TorchDiffusionError, ImportError):
    """An optional package that a feature needs is not installed; the message gives the pip command."""
