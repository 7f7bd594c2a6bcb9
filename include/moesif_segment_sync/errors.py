"""Exception types: each names what went wrong and what to do, never a secret."""


class SyncError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(SyncError):
    """A setting or connection is missing or invalid; the message names it."""


class MoesifError(SyncError):
    """Moesif answered with an error that retrying will not fix."""

    def __init__(self, status: int, message: str, *, endpoint: str, hint: str = "") -> None:
        self.status = status
        self.endpoint = endpoint
        self.moesif_message = message
        text = f"Moesif answered {status} on {endpoint}: {message or '(no message)'}"
        super().__init__(f"{text}; {hint}" if hint else text)


class SegmentError(SyncError):
    """Segment refused a batch with a status that retrying will not fix."""

    def __init__(self, status: int, message: str, *, batch_no: int) -> None:
        self.status = status
        self.batch_no = batch_no
        self.segment_message = message
        super().__init__(
            f"Segment answered {status} to batch {batch_no}: {message or '(no message)'}"
        )


class TransientHTTPError(SyncError):
    """A retryable answer (429, 5xx, broken body): the retry policy decides what next."""

    def __init__(self, what: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(what)


class StagingError(SyncError):
    """The staging root cannot be read or written; the message names the path."""


class ScratchError(SyncError):
    """The transform's temporary tables on the worker's local disk cannot be written."""


class AccountingError(SyncError):
    """A run's counts do not add up: some record is unaccounted for."""


class RejectThresholdError(SyncError):
    """Too large a share of a run's users was rejected: the source data needs a look."""


def redact(text: str, *secrets: str) -> str:
    """``text`` with every secret replaced, for error messages that quote a server."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
