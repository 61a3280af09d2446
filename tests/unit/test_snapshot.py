"""Content-addressed training snapshots: stable hashes, reuse without rewrite, tamper detection."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from retrainer import settings
from retrainer.exceptions import RetrainerError, SnapshotIntegrityError
from retrainer.storage.snapshots import content_hash, create_snapshot, load_snapshot, read_manifest
from tests.support.s3_emulator import MotoS3

pytestmark = pytest.mark.unit


@pytest.fixture
def frame(bikeshare_weeks) -> pd.DataFrame:
    return pd.concat([bikeshare_weeks[0][1], bikeshare_weeks[1][1]], ignore_index=True)


def make(df, folder, sources=("w1.parquet",)):
    return create_snapshot(df, folder, time_column="timestamp", sources=list(sources))


def test_same_content_same_hash_and_not_rewritten(tmp_path, frame):
    first = make(frame, tmp_path)
    mtime = first.data_path.stat().st_mtime_ns
    manifest_before = (first.path / "manifest.json").read_text()

    second = make(frame.copy(), tmp_path, sources=("other.parquet",))

    assert first.created is True and second.created is False
    assert second.sha256 == first.sha256 and second.path == first.path
    assert first.data_path.stat().st_mtime_ns == mtime
    assert (first.path / "manifest.json").read_text() == manifest_before
    assert [p.name for p in tmp_path.iterdir()] == [first.sha256]  # no temp folders left behind


def test_manifest_records_rows_sources_and_time_range(tmp_path, frame):
    snap = make(frame, tmp_path, sources=("b.parquet", "a.parquet"))

    manifest = read_manifest(tmp_path, snap.sha256)

    assert manifest["sha256"] == snap.sha256 and manifest["rows"] == len(frame) == snap.rows
    assert manifest["source_batches"] == ["a.parquet", "b.parquet"]
    assert manifest["time_range"] == [str(frame["timestamp"].min()), str(frame["timestamp"].max())]


def test_row_order_of_input_does_not_change_hash(tmp_path, frame):
    assert frame["timestamp"].is_unique  # precondition: sorting by time gives one order
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert not shuffled["timestamp"].equals(frame["timestamp"])

    a = make(frame, tmp_path / "a")
    b = make(shuffled, tmp_path / "b")

    assert a.sha256 == b.sha256


def test_changed_value_changes_hash(tmp_path, frame):
    changed = frame.copy()
    changed.loc[5, "temp"] = changed.loc[5, "temp"] + 0.01

    a = make(frame, tmp_path)
    b = make(changed, tmp_path)

    assert a.sha256 != b.sha256
    assert b.created is True


def test_changed_dtype_changes_hash(frame):
    assert content_hash(frame) != content_hash(frame.astype({"hr": "float64"}))


def test_load_snapshot_verifies_and_returns_data(tmp_path, frame):
    snap = make(frame.iloc[::-1], tmp_path)

    df = load_snapshot(tmp_path, snap.sha256)

    assert len(df) == len(frame)
    assert df["timestamp"].is_monotonic_increasing  # stored sorted by time
    assert content_hash(df) == snap.sha256


def test_tampered_snapshot_is_refused(tmp_path, frame):
    snap = make(frame, tmp_path)
    df = pd.read_parquet(snap.data_path)
    df.loc[0, "bikers"] = df.loc[0, "bikers"] + 1
    df.to_parquet(snap.data_path, index=False)

    with pytest.raises(SnapshotIntegrityError, match="has been modified"):
        load_snapshot(tmp_path, snap.sha256)


def test_tampered_manifest_does_not_hide_tampered_data(tmp_path, frame):
    snap = make(frame, tmp_path)
    df = pd.read_parquet(snap.data_path).iloc[1:]
    df.to_parquet(snap.data_path, index=False)
    manifest = json.loads((snap.path / "manifest.json").read_text())
    manifest["rows"] = len(df)
    (snap.path / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(SnapshotIntegrityError):
        load_snapshot(tmp_path, snap.sha256)


def test_unknown_snapshot_is_an_integrity_error(tmp_path):
    with pytest.raises(SnapshotIntegrityError, match="not found"):
        load_snapshot(tmp_path, "0" * 64)


def test_empty_frame_refused(tmp_path, frame):
    with pytest.raises(RetrainerError, match="empty"):
        make(frame.iloc[0:0], tmp_path)
    assert not any(tmp_path.iterdir())


def test_snapshot_on_the_s3_emulator_is_written_once_reused_and_verified(frame, monkeypatch):
    """On moto's S3 emulator (127.0.0.1): the same content is one snapshot, its manifest created once, and
    tampered data is refused as on a folder."""
    emulator = MotoS3.start()
    try:
        monkeypatch.setenv("RETRAINER_DATA_STORAGE_OPTIONS", json.dumps(emulator.options))
        folder = settings.data_root_at(emulator.new_bucket() + "/data") / "snapshots" / "m"

        first = make(frame, folder)
        second = make(frame.copy(), folder, sources=("other.parquet",))

        assert first.created and not second.created and first.sha256 == second.sha256
        assert read_manifest(folder, first.sha256)["source_batches"] == ["w1.parquet"]  # the first kept
        pd.testing.assert_frame_equal(
            load_snapshot(folder, first.sha256),
            frame.sort_values("timestamp", kind="mergesort").reset_index(drop=True),
        )
        changed = frame.copy()
        changed.loc[0, changed.columns[-1]] = 0
        with (folder / first.sha256 / "data.parquet").open("wb") as fh:
            changed.sort_values("timestamp", kind="mergesort").to_parquet(fh, index=False)
        with pytest.raises(SnapshotIntegrityError):
            load_snapshot(folder, first.sha256)
    finally:
        emulator.stop()
