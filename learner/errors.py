"""Domain exceptions of the learner. Their messages are meant for the user as they are."""

from __future__ import annotations


class LearnerError(Exception):
    """Base class of every error the learner raises on purpose."""


class ModelNotFound(LearnerError):
    """A model spec (builtin name, local directory or hub id) cannot be loaded offline."""


class NotFitted(LearnerError):
    """A method that needs a trained model was called before ``fit`` or ``load``."""


class InvalidArtefact(LearnerError):
    """A directory given to ``TransformerClassifier.load`` is not a usable Labelwise model."""


class ResumeMismatch(LearnerError):
    """A simulation asked to resume found saved curves measured with other settings, data or
    model; resuming would mix them or overwrite hours of work, so it stops before either."""
