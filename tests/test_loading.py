"""Model sources and output folders are checked before any model loads."""

import os

import pytest
import torch

from vlmteach_fast.loading import check_out_dir, check_source, default_dtype


def test_check_source(tmp_path):
    assert check_source("org/model-id", "--pipeline") == "org/model-id"  # a hub id passes through
    assert check_source(str(tmp_path), "--pipeline") == str(tmp_path)
    with pytest.raises(FileNotFoundError, match="--teacher directory not found: './nope'"):
        check_source("./nope", "--teacher")
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileNotFoundError, match="--pipeline directory not found"):
        check_source(str(tmp_path / "f"), "--pipeline")


def test_check_out_dir_creates_and_probes(tmp_path):
    check_out_dir(str(tmp_path / "new" / "out"))
    assert os.listdir(tmp_path / "new" / "out") == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="--out .* exists and is not a directory"):
        check_out_dir(str(tmp_path / "file"))
    with pytest.raises(PermissionError, match="--out directory .* is not writable"):
        check_out_dir(str(tmp_path / "file" / "below"))


def test_default_dtype():
    assert default_dtype(torch.device("cpu")) == torch.float32
    assert default_dtype(torch.device("cuda")) == torch.bfloat16
    assert default_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="`dtype` must name a torch dtype"):
        default_dtype(torch.device("cpu"), "floaty")
