"""The project's one error type: bad input, or a machine that cannot do the job.

Every command shows a ``ProjectError`` as one line and exits 2 (``model.cli``); any other
exception is a bug in this project and is shown with its traceback. The specific errors
(``DatasetError``, ``CheckpointError``, ``ConversionError``, ``ArtifactError``,
``InputError``, ``ConfigError``) derive from it.
"""

from __future__ import annotations


class ProjectError(ValueError):
    """Something the user can fix; the message names the file or option and the problem."""


class ConfigError(ProjectError):
    """A configuration value (variant, image size, training recipe) that cannot be used."""
