"""A full, read-only or over-quota file system is not the instance's fault: ``bench`` stops with one line and records
nothing for it, so the same command resumes once space is freed; ``solve`` says so in one line and keeps the adapter
when it can. The failing write is simulated (``export_video`` raising the errno), as no test can fill a real disk."""

import errno
import os

import pytest

from vlmteach_fast.io_atomic import storage_error

CONFIG = "max_steps: 1\nlr: 0.01\nprogress: false\nsampling: {num_frames: 5, final_steps: 1}\nlora: {rank: 2}\n"


def _fail_writes(monkeypatch, code, after: int = 0):
    """``export_video`` raises ``code`` from its ``after``-th call on (two calls per saved set: mp4, gif)."""
    import vlmteach_fast.reasoner as reasoner

    real, calls = reasoner.export_video, []

    def export_video(frames, path, **kw):
        calls.append(path)
        if len(calls) > after:
            raise OSError(code, os.strerror(code), path)
        return real(frames, path, **kw)

    monkeypatch.setattr(reasoner, "export_video", export_video)


def test_storage_errors_are_told_from_other_errors():
    assert storage_error(OSError(errno.ENOSPC, "No space left on device")) == os.strerror(errno.ENOSPC)
    wrapped = RuntimeError("ffmpeg failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert storage_error(wrapped) == os.strerror(errno.EDQUOT)
    assert storage_error(RuntimeError(f"file write failed: {os.strerror(errno.EROFS)}")) == os.strerror(errno.EROFS)
    assert storage_error(OSError(errno.ENOENT, "No such file")) is None and storage_error(ValueError("x")) is None


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_bench_stops_on_a_full_disk_records_nothing_for_it_and_resumes(write_jsonl_suite, tmp_path, monkeypatch,
                                                                       capsys, code):
    from vlmteach_fast.evaluate import read_all_records
    from vlmteach_fast.evaluate.cli import main

    root = write_jsonl_suite(3, "make the video bright", CONFIG)
    out = tmp_path / "out"
    args = ["bench", "--suite", str(root / "suite.jsonl"), "--method", "baseline", "--pipeline",
            "py:vlmteach_fast.testing:tiny_ti2v_pipeline", "--teacher", "py:vlmteach_fast.testing:BrightnessTeacher",
            "--config", str(root / "cfg.yaml"), "--out", str(out), "--no-progress"]
    with monkeypatch.context() as m:
        _fail_writes(m, code, after=2)  # the first instance's set is written, the second one's is not
        assert main(args) == 1
    err = capsys.readouterr().err
    assert f"bench: stopped: {os.strerror(code)}" in err and "re-run the same command to resume" in err
    assert "Traceback" not in err
    assert [(r["instance_id"], r["status"]) for r in read_all_records(out)] == [("t/i0", "ok")]  # no "error" record

    assert main(args) == 0  # space freed: the same command runs the two that were not done
    assert "1 already done, 2 to run" in capsys.readouterr().out
    assert sorted(r["status"] for r in read_all_records(out)) == ["ok"] * 3


def test_solve_on_a_full_disk_keeps_the_adapter_and_says_so(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from vlmteach_fast.cli import main
    from vlmteach_fast.outputs import load_adapter
    from vlmteach_fast.testing import make_qwen_image_processor, make_qwen_vl, tiny_ti2v_pipeline

    tiny_ti2v_pipeline().save_pretrained(tmp_path / "pipe")
    model, tok = make_qwen_vl()
    for obj in (model, tok, make_qwen_image_processor()):
        obj.save_pretrained(tmp_path / "teacher")
    Image.new("RGB", (32, 32), (30, 60, 90)).save(tmp_path / "frame.png")
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    _fail_writes(monkeypatch, errno.ENOSPC)  # no room for the videos
    with pytest.raises(SystemExit) as stop:
        main(["solve", "--pipeline", str(tmp_path / "pipe"), "--teacher", str(tmp_path / "teacher"), "--prompt",
              "make it bright", "--image", str(tmp_path / "frame.png"), "--queries", '["Is it bright?"]',
              "--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "out")])
    message = str(stop.value.code)
    assert message.startswith(f"error: could not save the result in {tmp_path / 'out'}: No space left on device")
    assert "the adapter, history.json and result.json are saved" in message
    assert sorted(os.listdir(tmp_path / "out")) == ["adapter", "history.json", "manifest.json", "result.json"]
    load_adapter(tiny_ti2v_pipeline(), tmp_path / "out")  # a whole, verified set


def test_bench_on_a_disk_that_fills_while_the_reports_are_written_says_so_in_one_line(write_jsonl_suite, tmp_path,
                                                                                        monkeypatch, capsys):
    import vlmteach_fast.evaluate.summary as summary
    from vlmteach_fast.evaluate import read_all_records
    from vlmteach_fast.evaluate.cli import main

    root = write_jsonl_suite(1, "make the video bright", CONFIG)

    def full(*a, **k):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(tmp_path / "out" / "summary.md"))

    monkeypatch.setattr(summary, "write_reports", full)
    assert main(["bench", "--suite", str(root / "suite.jsonl"), "--method", "baseline", "--pipeline",
                 "py:vlmteach_fast.testing:tiny_ti2v_pipeline", "--teacher",
                 "py:vlmteach_fast.testing:BrightnessTeacher", "--config", str(root / "cfg.yaml"), "--out",
                 str(tmp_path / "out"), "--no-progress"]) == 1
    assert f"bench: stopped: {os.strerror(errno.EDQUOT)}" in capsys.readouterr().err
    assert [r["status"] for r in read_all_records(tmp_path / "out")] == ["ok"]  # the finished instance stays
