"""Writing results: every file is written to a temporary name in the target directory and moved into place with
``os.replace``, so a crash or Ctrl-C never leaves a half-written file under the final name."""

from __future__ import annotations

import json
import os
import tempfile

import torch

__all__ = ["atomic_write_json", "atomic_write_bytes", "save_reward_plot", "save_optimize_result",
           "save_frames_result"]


def atomic_write_bytes(path, data: bytes) -> str:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_json(path, obj) -> str:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o):
    if torch.is_tensor(o):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def save_reward_plot(history, questions, path) -> str:
    """PNG of P(Yes) per query over optimization steps (one line per question)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    steps = [h.step for h in history]
    for qi, q in enumerate(questions):
        label = q if len(q) <= 60 else q[:57] + "..."
        ax.plot(steps, [h.p_yes[qi] for h in history], marker="o", label=label)
    ax.set_xlabel("optimization step")
    ax.set_ylabel('P("Yes")')
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def save_frames_result(frames: torch.Tensor, summary: dict, out_dir, fps: int = 8) -> dict:
    """video.mp4, video.gif and result.json for any method. Returns {name: path}."""
    from .reasoner import export_video

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "video.mp4": export_video(frames[0], os.path.join(out_dir, "video.mp4"), fps=fps),
        "video.gif": export_video(frames[0], os.path.join(out_dir, "video.gif"), fps=fps),
    }
    paths["result.json"] = atomic_write_json(os.path.join(out_dir, "result.json"), summary)
    return paths


def save_optimize_result(result, out_dir, fps: int = 8) -> dict:
    """All files of an ``OptimizeResult``: video.mp4, video.gif, adapter/, history.json, reward.png, result.json."""
    out_dir = os.fspath(out_dir)
    paths = save_frames_result(result.frames, result.summary(), out_dir, fps=fps)
    paths["adapter"] = result.reasoner.save_adapter(os.path.join(out_dir, "adapter"))
    paths["history.json"] = atomic_write_json(os.path.join(out_dir, "history.json"),
                                              [h.to_dict() for h in result.history])
    paths["reward.png"] = save_reward_plot(result.history, result.queries.questions,
                                           os.path.join(out_dir, "reward.png"))
    return paths
