"""The one exception family users see: every message is a sentence a person can act on."""


class EnsembleError(Exception):
    """Base for errors caused by user input or user-supplied files (CLI exits 2, app shows it)."""


class AudioInputError(EnsembleError):
    """An audio file or array that cannot be used as input."""


class CheckpointError(EnsembleError):
    """A checkpoint that is missing, corrupt or does not match its config."""


class DataError(EnsembleError):
    """A dataset folder or track that cannot be read."""


class IndexMismatchError(EnsembleError):
    """A RAG index that is empty, corrupt or built with another feature configuration."""
