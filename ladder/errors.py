"""The exceptions Ladder raises, in one place; each boundary (CLI, HTTP) translates them once."""


class LadderError(Exception):
    """Base class of every error Ladder reports to a user."""


class ConfigError(LadderError):
    """A pool or settings file is invalid; the message names the file, the key and the line."""


class DataError(LadderError):
    """A routing data file cannot be read: missing column, bad value, unknown format."""


class CheckpointError(LadderError):
    """A checkpoint is missing, corrupt, of an unknown version or made for a different pool."""


class PromptError(LadderError):
    """The text to route is unusable: empty, not valid UTF-8, or too large."""


class NoEligibleModelError(LadderError):
    """No model in the pool satisfies the request's constraints."""


class UnknownModelError(LadderError):
    """A request names a model that is not in the pool."""
