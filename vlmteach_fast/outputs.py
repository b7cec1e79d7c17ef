"""Writing results: the files of a method's result, each written atomically (``io_atomic``)."""

from __future__ import annotations

import os

import torch

from .io_atomic import atomic_write_bytes, atomic_write_json

__all__ = ["save_reward_plot", "save_optimize_result",
           "save_frames_result"]


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
