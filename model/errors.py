"""The project's one error type: bad input, or a machine that cannot do the job.

Every command shows a ``ProjectError`` as one line and exits 2 (``model.options``); any other
exception is a bug in this project and is shown with its traceback. The specific errors
(``DatasetError``, ``CheckpointError``, ``ConversionError``, ``ArtifactError``,
``InputError``, ``ConfigError``) derive from it.
"""

from __future__ import annotations


class ProjectError(ValueError):
    """Something the user can fix; the message names the file or option and the problem."""


class ConfigError(ProjectError):
    """A configuration value (variant, image size, training recipe) that cannot be used."""


def one_line(err: BaseException) -> str:
    """The first line of an error's message, with the file name an OSError carries."""
    if isinstance(err, OSError) and err.filename and str(err.filename) not in str(err):
        text = f"{err.filename}: {err.strerror or err}"
    else:
        text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
