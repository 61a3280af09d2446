"""The time rule and the rows hash: how every task, the archive index and the backtest read a batch's
times (UTC, without an offset) and tell a re-export of the same rows from new rows."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# a time written with a UTC offset: ...T12:00Z, ...12:00:00+01:00, ...12:00-0500, ...12:00 UTC
_OFFSET = re.compile(r"\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d\d(?::?\d\d)?)$", re.IGNORECASE)


def has_offset(values: pd.Series) -> pd.Series | None:
    """Which values of a time column carry a UTC offset (``Z``, ``+01:00``, ...): a boolean Series for
    text and object columns, None for a typed datetime column (one time zone, or none, for all rows)."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return None
    return values.map(
        lambda v: (
            bool(_OFFSET.search(v.strip())) if isinstance(v, str) else getattr(v, "tzinfo", None) is not None
        )
    )


def to_utc_naive(values: pd.Series) -> pd.Series:
    """The time rule, the same for the gate, every task, the archive index and the backtest: times with
    a UTC offset are converted to UTC and kept without the offset; times without one are taken as they
    are (read as UTC where they are compared with the clock). A column mixing both raises
    :class:`ValueError`: its order is ambiguous, and the gate quarantines such a batch."""
    import warnings

    import pandas as pd

    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values):
        return values
    try:
        with warnings.catch_warnings():  # mixed offsets: handled below, the same in every pandas
            warnings.simplefilter("ignore", FutureWarning)
            parsed = pd.to_datetime(values, utc=False)
    except (ValueError, TypeError):
        offset = has_offset(values)
        if offset is not None and offset[values.notna()].nunique() > 1:
            raise ValueError(mixed_offsets_message(values, offset)) from None
        raise
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):  # one offset for every row
        return parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    if parsed.dtype == object:  # several offsets (a week across a daylight-saving change), or a mix
        offset = has_offset(values)
        if offset is not None and offset[values.notna()].nunique() > 1:
            raise ValueError(mixed_offsets_message(values, offset))
        return pd.to_datetime(values, utc=True).dt.tz_localize(None)
    return parsed


def mixed_offsets_message(values: pd.Series, offset: pd.Series) -> str:
    """What is wrong with a time column mixing values with and without a UTC offset, with examples."""
    present = values.notna()
    with_, without = values[present & offset], values[present & ~offset]
    return (
        f"{len(with_)} value(s) carry a UTC offset and {len(without)} do not, e.g. "
        f"{[str(v) for v in with_.head(2)]} and {[str(v) for v in without.head(2)]}: write every time "
        "with its offset, or every time in one zone without it"
    )


def rows_sha256(df: pd.DataFrame) -> str:
    """A hash of a batch's rows as the model reads them (``df`` prepared: times in UTC, categories as
    text), whatever the file format, column order, row order or number formatting (numbers compared to
    about 11 significant digits, what a text export keeps): a re-export of the same rows hashes the same."""
    import numpy as np
    import pandas as pd

    cols = sorted(df.columns, key=str)
    norm = pd.DataFrame(index=range(len(df)))
    for col in cols:
        values = df[col].reset_index(drop=True)
        if pd.api.types.is_datetime64_any_dtype(values):
            norm[str(col)] = to_utc_naive(values).astype("int64").where(values.notna(), -1)
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            number = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
            mantissa, exponent = np.frexp(number)  # 11 decimals of the mantissa: text exports round
            norm[str(col)] = np.ldexp(np.round(mantissa, 11), exponent)
        else:
            norm[str(col)] = values.astype("string").fillna("\x00<NA>")
    h = hashlib.sha256(",".join(str(c) for c in cols).encode())
    if cols:  # one hash per row, sorted: the order rows were written in does not count
        h.update(np.sort(pd.util.hash_pandas_object(norm, index=False).to_numpy()).tobytes())
    return h.hexdigest()


def naive_time(t: Any) -> Any:
    """A time from the archive index by the time rule (entries written before it may carry an offset)."""
    return t.tz_convert("UTC").tz_localize(None) if getattr(t, "tzinfo", None) is not None else t
