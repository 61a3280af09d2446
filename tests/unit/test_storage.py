"""The data root: claims, moves between stages, name safety, symlink refusal, unreadable batches."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from retrainer import storage
from retrainer.exceptions import BatchError
from retrainer.storage import DataRoot, check_batch_name, read_batch
from tests.support.s3_emulator import MotoS3

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit

FRAME = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3, freq="h"), "x": [1.0, 2.0, 3.0]})


@pytest.fixture(scope="module")
def s3_emulator():
    """moto's S3 emulator on 127.0.0.1 (see tests/support/s3_emulator.py)."""
    emulator = MotoS3.start()
    yield emulator
    emulator.stop()


@pytest.fixture(params=["local", "s3-emulator"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def dr(tmp_path: Path, backend: str, request, monkeypatch) -> DataRoot:
    """A data root in a temp folder, or in a fresh bucket of moto's S3 emulator."""
    if backend == "local":
        return DataRoot(tmp_path / "data", "m").ensure()
    emulator = request.getfixturevalue("s3_emulator")
    for key, value in emulator.env(emulator.new_bucket() + "/data").items():
        monkeypatch.setenv(key, value)
    return DataRoot.for_model("m").ensure()


@pytest.fixture
def local_only(backend: str) -> None:
    if backend != "local":
        pytest.skip("symbolic links exist on local file systems only")


def all_files(root: Path) -> list[Path]:
    return sorted((p for p in root.rglob("*") if p.is_file() and "state" not in p.parts), key=str)


def test_claim_takes_oldest_by_name_and_is_stable_per_run(dr):
    for name in ("2024-01-15.parquet", "2024-01-01.parquet", "2024-01-08.csv"):
        dr.import_batch(FRAME, name)

    first = dr.claim("run-a")
    again = dr.claim("run-a")

    assert first is not None and first.batch == "2024-01-01.parquet"
    assert (dr.processing / "2024-01-01.parquet").exists()
    assert not (dr.landing / "2024-01-01.parquet").exists()
    assert again == first  # same run id -> same claim back, nothing new taken
    assert dr.pending() == ["2024-01-08.csv", "2024-01-15.parquet"]


def test_second_run_gets_next_batch_and_no_batch_gives_none(dr):
    dr.import_batch(FRAME, "b1.parquet")
    dr.import_batch(FRAME, "b2.parquet")

    a = dr.claim("run-a")
    b = dr.claim("run-b")
    c = dr.claim("run-c")

    assert (a.batch, b.batch) == ("b1.parquet", "b2.parquet")
    assert a.run_id == "run-a" and b.run_id == "run-b"
    assert c is None


def test_claim_records_content_hash(dr):
    import hashlib

    path = dr.import_batch(FRAME, "b1.parquet")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()

    claim = dr.claim("run-a")

    assert claim.sha256 == expected


def test_archive_moves_batch_and_flags_sidecar(dr):
    dr.import_batch(FRAME, "b1.csv")
    (dr.landing / "b1.flags.csv").write_text("row\n0\n")
    dr.claim("run-a")
    assert (dr.processing / "b1.flags.csv").exists()  # the sidecar travelled with the claim

    dest = dr.archive_batch("b1.csv")

    assert dest == dr.archive / "b1.csv" and dest.exists()
    assert (dr.archive / "b1.flags.csv").read_text() == "row\n0\n"
    assert not (dr.processing / "b1.csv").exists()
    assert dr.locate("b1.csv") == ("archive", dest)
    assert dr.archive_batch("b1.csv") == dest  # already there: a no-op


def test_quarantine_moves_batch_sidecar_and_writes_reason(dr):
    dr.import_batch(FRAME, "b1.parquet")
    (dr.landing / "b1.flags.csv").write_text("row\n1\n")
    dr.claim("run-a")

    dest = dr.quarantine_batch("b1.parquet", {"message": "bad temp column"})

    assert dest == dr.quarantine / "b1.parquet" and dest.exists()
    assert (dr.quarantine / "b1.flags.csv").exists()
    reason = json.loads((dr.quarantine / "b1.parquet.reason.json").read_text())
    assert reason["message"] == "bad temp column" and reason["batch"] == "b1.parquet"
    assert dr.quarantine_reason("b1.parquet")["message"] == "bad temp column"


def test_moves_never_delete_files(dr):
    for i in range(4):
        dr.import_batch(FRAME, f"b{i}.parquet")
    (dr.landing / "b0.flags.csv").write_text("row\n0\n")
    before = len(all_files(dr.root))

    c0, c1 = dr.claim("r0"), dr.claim("r1")
    dr.archive_batch(c0.batch)
    dr.quarantine_batch(c1.batch, {"message": "x"})
    # the same name landing again must not overwrite the archived copy
    dr.import_batch(FRAME.assign(x=[9.0, 9.0, 9.0]), "b9.parquet", stage="archive")
    dr.import_batch(FRAME.assign(x=[7.0, 7.0, 7.0]), "b9.parquet")
    dr.archive_batch("b9.parquet")

    names = [p.name for p in all_files(dr.root)]
    assert len(names) == before + 2 + 1  # +2 b9 copies, +1 reason.json; nothing lost
    assert sum(n.startswith("b9") and n.endswith(".parquet") for n in names) == 2
    assert read_batch(dr.archive / "b9.parquet")["x"].tolist() == [9.0, 9.0, 9.0]


@pytest.mark.parametrize(
    "name", ["../x.csv", ".hidden.csv", "a/b.csv", "x.txt", "", "x.flags.csv", "a b.csv"]
)
def test_unsafe_or_unsupported_names_are_rejected(name):
    with pytest.raises(BatchError):
        check_batch_name(name)


@pytest.mark.parametrize("name", ["2024-01-01.parquet", "week_01.csv", "A.b-c.parquet"])
def test_safe_names_are_accepted(name):
    assert check_batch_name(name) == name


def test_locate_and_import_refuse_unsafe_names(dr):
    with pytest.raises(BatchError):
        dr.locate("../landing/m/x.csv")
    with pytest.raises(BatchError):
        dr.import_batch(FRAME, "../escape.parquet")
    assert not (dr.root / "landing" / "escape.parquet").exists()


def test_unsafe_named_file_in_landing_is_quarantined_not_processed(dr):
    (dr.landing / "bad;name.csv").write_text("t,x\n2024-01-01,1\n")
    (dr.landing / ".hidden.csv").write_text("t,x\n2024-01-01,1\n")  # a temporary name: left alone
    dr.import_batch(FRAME, "z-good.parquet")

    claim = dr.claim("run-a")

    assert claim.batch == "z-good.parquet"
    assert not (dr.landing / "bad;name.csv").exists()
    assert (dr.landing / ".hidden.csv").exists()
    assert (dr.quarantine / "bad_name.csv").read_text() == "t,x\n2024-01-01,1\n"
    reason = json.loads((dr.quarantine / "bad_name.csv.reason.json").read_text())
    assert "unsafe" in reason["message"] and "bad;name.csv" in reason["message"]


def test_two_unsafe_names_sanitised_alike_are_both_kept(dr):
    (dr.landing / "a b.csv").write_text("first\n")
    (dr.landing / "a+b.csv").write_text("second\n")

    claim = dr.claim("run-a")

    assert claim is None
    kept = sorted(p.read_text() for p in dr.quarantine.iterdir() if not p.name.endswith(".reason.json"))
    assert kept == ["first\n", "second\n"]
    assert len(list(dr.quarantine.glob("*.reason.json"))) == 2


def test_symlink_in_landing_pointing_outside_root_is_quarantined_not_followed(tmp_path, dr, local_only):
    secret = tmp_path / "outside.csv"
    secret.write_text("t,x\n2024-01-01,1\n")
    (dr.landing / "evil.csv").symlink_to(secret)
    dr.import_batch(FRAME, "good.parquet")

    claim = dr.claim("run-a")

    assert claim is not None and claim.batch == "good.parquet"  # the link does not block later batches
    assert secret.read_text() == "t,x\n2024-01-01,1\n"  # target untouched, still where it was
    assert (dr.quarantine / "evil.csv").is_symlink()  # the link itself was moved
    reason = json.loads((dr.quarantine / "evil.csv.reason.json").read_text())
    assert "symbolic link" in reason["message"]
    with pytest.raises(BatchError, match="outside the data root"):
        dr.inside(dr.quarantine / "evil.csv")


def test_symlink_inside_root_is_not_followed_either(dr, local_only):
    real = dr.import_batch(FRAME, "real.parquet", stage="archive")
    (dr.landing / "link.parquet").symlink_to(real)

    assert dr.claim("run-a") is None

    assert real.exists() and (dr.archive / "real.parquet").exists()  # the archived target did not move
    assert (dr.quarantine / "link.parquet").is_symlink()


def test_read_batch_corrupt_parquet_names_the_file(dr):
    bad = dr.landing / "corrupt.parquet"
    bad.write_bytes(b"PAR1 this is not really parquet")

    with pytest.raises(BatchError, match=r"corrupt\.parquet"):
        read_batch(bad)


def test_read_batch_round_trips_csv_and_parquet(dr):
    p = dr.import_batch(FRAME, "b.parquet")
    c = dr.import_batch(FRAME, "b.csv")

    assert read_batch(p).equals(FRAME)
    assert read_batch(c)["x"].tolist() == [1.0, 2.0, 3.0]


def test_for_model_is_the_configured_root(monkeypatch, tmp_path):
    monkeypatch.setenv("RETRAINER_DATA_ROOT", str(tmp_path / "elsewhere"))

    dr = DataRoot.for_model("m")

    assert dr.root == (tmp_path / "elsewhere").resolve() and dr.landing == dr.root / "landing" / "m"


def test_concurrent_atomic_writes_of_one_file_never_share_a_temporary_file(tmp_path):
    """A second writer of the same file (another run's retry) that finishes while the first is still
    writing leaves the first one's write intact: each writer has its own temporary file."""
    target = tmp_path / "rows.parquet"
    other = FRAME.assign(x=[7.0, 8.0, 9.0])

    data = FRAME.to_parquet(index=False)

    def first(fh):
        fh.write(data[:100])
        fh.flush()
        storage.write_parquet(target, other)  # the second writer, start to finish, in the middle
        fh.write(data[100:])

    storage.fs_of(target).write_atomic(target, first)

    pd.testing.assert_frame_equal(pd.read_parquet(target), FRAME)  # the last rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["rows.parquet"]  # no temporary file left behind


def test_move_to_a_free_name_never_overwrites(tmp_path):
    (tmp_path / "x.csv").write_text("first\n")
    (tmp_path / "x.dup-1.csv").symlink_to(tmp_path / "gone")  # a dangling link holds its name too
    src = tmp_path / "in" / "x.csv"
    src.parent.mkdir()
    src.write_text("second\n")

    dest = storage.move_to_free_name(src, tmp_path / "x.csv")

    assert dest.name == "x.dup-2.csv" and dest.read_text() == "second\n" and not src.exists()
    assert (tmp_path / "x.csv").read_text() == "first\n"
