"""The training window is read from the archive's time index: files before the window are never opened."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from retrainer.ml.train import gather_window, labelled, prepare, select_window
from retrainer.storage import DataRoot, read_batch

pytestmark = pytest.mark.unit


def naive_window(cfg, dr):
    """What a retrain read before the index: every archived file, then the window."""
    frames = [labelled(cfg, prepare(cfg, read_batch(p))) for p in dr.archived()]
    return select_window(cfg, pd.concat([f for f in frames if len(f)], ignore_index=True))[0]


def test_window_from_index_equals_full_read_and_skips_old_files(tmp_path, bikeshare_cfg, bikeshare_weeks):
    dr = DataRoot(tmp_path, "bikeshare").ensure()
    for start, week in bikeshare_weeks[:20]:
        dr.import_batch(week, f"{start}.parquet", stage="archive")
    _, newest = bikeshare_weeks[19]
    unlabelled = newest.assign(timestamp=newest["timestamp"] + pd.Timedelta("7D"), bikers=None)
    dr.import_batch(unlabelled, "2099-labels-pending.csv", stage="archive")  # newest rows, no labels yet

    df, sources = gather_window(bikeshare_cfg, dr)

    pd.testing.assert_frame_equal(df, naive_window(bikeshare_cfg, dr))
    assert len(sources) == 8  # 8W window over weekly batches, anchored on the newest labelled row
    index = dr.archive_ranges("timestamp")
    assert len(index) == 21 and dr.archive_index.exists()

    # overwrite the oldest batch with garbage of the same size and time stamp: the index still
    # describes it, so a retrain that never opens it cannot notice
    oldest = dr.archived()[0]
    st = oldest.stat()
    oldest.write_bytes(b"\0" * st.st_size)
    os.utime(oldest, ns=(st.st_atime_ns, st.st_mtime_ns))

    again, again_sources = gather_window(bikeshare_cfg, dr)

    pd.testing.assert_frame_equal(again, df)
    assert again_sources == sources
