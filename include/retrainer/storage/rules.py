"""The delivery contract's names and limits: what a batch file may be called, what is never claimed, and
the knobs (environment variables) that bound a batch and its claim."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime, timedelta

from retrainer.exceptions import BatchError

BATCH_SUFFIXES = (".parquet", ".csv")
FLAGS_SUFFIX = ".flags.csv"
TEMP_SUFFIXES = (".tmp", ".part")  # delivery in progress: never claimed, never quarantined
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
STAGES = ("landing", "processing", "archive", "quarantine")
CLAIMED_STAGES = ("processing", "archive", "quarantine")  # where a claimed batch can be: never landing


def settle_seconds() -> float:
    """``RETRAINER_SETTLE_SECONDS``: a landed file must be unchanged this long before it is claimed."""
    return float(os.environ.get("RETRAINER_SETTLE_SECONDS", "5"))


def max_batch_bytes() -> int:
    """``RETRAINER_MAX_BATCH_BYTES`` (default 1 GiB): larger files are quarantined without being read."""
    return int(os.environ.get("RETRAINER_MAX_BATCH_BYTES", str(1 << 30)))


def max_attempts() -> int:
    """``RETRAINER_MAX_BATCH_ATTEMPTS`` (default 3): runs that may try a batch before it is quarantined."""
    return int(os.environ.get("RETRAINER_MAX_BATCH_ATTEMPTS", "3"))


def stuck_after() -> timedelta:
    """``RETRAINER_STUCK_AFTER_MINUTES`` (default 60): a batch in processing this long is shown as stuck."""
    return timedelta(minutes=float(os.environ.get("RETRAINER_STUCK_AFTER_MINUTES", "60")))


def batch_stem(batch: str) -> str:
    """A batch's file name without its suffix: the key of its reports and predictions."""
    return batch.rsplit(".", 1)[0]


def safe_key(text: str) -> str:
    """A file-name-safe key for arbitrary text such as an Airflow run id."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:60]
    return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def is_temporary(name: str) -> bool:
    """A name the delivery contract reserves for files still being written."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def check_batch_name(name: str) -> str:
    """Reject names that could escape the data root or that we cannot read."""
    if not SAFE_NAME.match(name) or ".." in name or name.endswith(FLAGS_SUFFIX):
        raise BatchError(f"unsafe or unsupported batch file name: {name!r}")
    if not name.endswith(BATCH_SUFFIXES):
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else "(none)"
        raise BatchError(
            f"unsupported batch format {name!r} (suffix {suffix}): use .parquet or .csv, lower case"
        )
    return name


def now_iso() -> str:
    """The current time in UTC, ISO 8601: what claims, reasons and deliveries record."""
    return datetime.now(UTC).isoformat()
