"""Atomic writes: the final name holds the old or the whole new content, and no temporary file or folder is left."""

import json
import os

import pytest
import torch

from vlmteach_fast.io_atomic import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_json, commit_dir


def test_write_bytes_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and os.listdir(path.parent) == ["a.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(path) as tmp:
            assert tmp.endswith("a.bin") and os.path.dirname(tmp) == str(tmp_path)  # same folder, same extension
            open(tmp, "wb").write(b"half")
            raise RuntimeError("writer died")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]


def test_write_json_serializes_tensors_and_to_dict(tmp_path):
    class Obj:
        def to_dict(self):
            return {"k": 1}

    atomic_write_json(tmp_path / "x.json", {"t": torch.tensor([1.5, 2.0]), "o": Obj()})
    assert json.loads((tmp_path / "x.json").read_text()) == {"t": [1.5, 2.0], "o": {"k": 1}}


def test_commit_dir_replaces_leftovers_and_cleans_up_on_error(tmp_path):
    final = tmp_path / "inst" / "x"
    final.mkdir(parents=True)
    (final / "stale.txt").write_text("from a killed attempt")
    commit_dir(lambda d: open(os.path.join(d, "video.mp4"), "w").write("v"), final)
    assert sorted(os.listdir(final)) == ["manifest.json", "video.mp4"]

    def boom(d):
        open(os.path.join(d, "half"), "w").write("h")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        commit_dir(boom, final)
    assert sorted(os.listdir(final)) == ["manifest.json", "video.mp4"] and os.listdir(tmp_path / "inst") == ["x"]


def test_atomic_dir_creates_a_new_folder(tmp_path):
    with atomic_dir(tmp_path / "new") as d:
        open(os.path.join(d, "f"), "w").write("1")
        assert not (tmp_path / "new").exists()  # nothing under the final name until the block ends
    assert os.listdir(tmp_path) == ["new"] and (tmp_path / "new" / "f").read_text() == "1"
    assert sorted(os.listdir(tmp_path / "new")) == ["f", "manifest.json"]


def test_a_symlink_to_a_folder_is_written_through_and_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    for text in ("1", "2"):  # the first write fills the target, the second swaps a set that exists
        commit_dir(lambda d: open(os.path.join(d, "video.mp4"), "w").write(text), tmp_path / "link")
    assert os.path.islink(tmp_path / "link") and os.path.realpath(tmp_path / "link") == str(tmp_path / "real")
    assert (tmp_path / "real" / "video.mp4").read_text() == "2"
    assert sorted(os.listdir(tmp_path)) == ["link", "real"]  # no `.tmp-...` link or folder left beside either
