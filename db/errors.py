"""Domain exceptions of the data layer. The UI and CLI turn them into messages."""


class LabelwiseError(Exception):
    """Base class: the message is meant for the user as it is."""


class NotFound(LabelwiseError):
    pass


class ImportFailed(LabelwiseError):
    """The import wrote nothing; ``report`` says why, line by line."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class ExportFailed(LabelwiseError):
    pass


class MigrationFailed(LabelwiseError):
    pass


class StorageError(LabelwiseError):
    """The database refused a write (read-only, disk full, locked too long); nothing was written."""
