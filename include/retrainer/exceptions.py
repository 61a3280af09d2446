"""The package's exceptions: one shallow hierarchy, each carrying the evidence a person needs."""

from __future__ import annotations

from typing import Any


class RetrainerError(Exception):
    """Base class for every error Retrainer raises on purpose."""


class ConfigError(RetrainerError):
    """A model config file is missing, malformed, or has unknown keys or bad values."""


class BatchError(RetrainerError):
    """A batch file cannot be accepted as given (unsafe name, unsupported format, unreadable)."""


class DataValidationError(RetrainerError):
    """Data failed its Great Expectations gate; carries the failed expectations."""

    def __init__(self, message: str, failures: list[dict[str, Any]] | None = None, report: str | None = None):
        super().__init__(message)
        self.failures = failures or []
        self.report = report


class DriftCheckError(RetrainerError):
    """The drift report could not be computed (e.g. no reference data)."""


class ModelRejected(RetrainerError):
    """A candidate model failed validation against the champion or the absolute floors."""

    def __init__(self, message: str, failed_checks: list[str] | None = None):
        super().__init__(message)
        self.failed_checks = failed_checks or []


class SnapshotIntegrityError(RetrainerError):
    """A snapshot's content no longer matches its recorded sha256."""


class NoChampionError(RetrainerError):
    """The operation needs a champion model and the registry has none."""


class PolicyStateError(RetrainerError):
    """A stored policy state is not one we wrote (unknown format, tampered content): it is not used."""
