"""Writing results: the files of a method's result as one output set (``io_atomic.commit_dir``: a temporary
folder with a manifest of every file and its SHA-256, moved into place whole), and loading an adapter back only
after checking it against that manifest."""

from __future__ import annotations

import os

import torch

from .io_atomic import MANIFEST, OutputSetError, atomic_write_bytes, atomic_write_json, verify_output_set
from .io_atomic import commit_dir as _commit_dir

__all__ = ["OUTPUT_NAMES", "save_reward_plot", "save_optimize_result", "save_frames_result", "load_adapter",
           "commit_output_set"]

# What a method writes into its output folder (and what versions before the manifest wrote): a folder holding only
# these may be replaced; anything else in it is the user's and is never deleted.
OUTPUT_NAMES = frozenset({"video.mp4", "video.gif", "result.json", "history.json", "reward.png", "adapter", MANIFEST})


def commit_output_set(write, out_dir) -> str:
    """``io_atomic.commit_dir`` for a method's output folder: refused when ``out_dir`` holds other files."""
    return _commit_dir(write, out_dir, known=OUTPUT_NAMES)


def load_adapter(pipe, directory, adapter_name: str | None = None):
    """Verify an output set (``directory`` or its ``adapter/``) against its manifest, then load the adapter with the
    pipeline's own ``load_lora_weights``. Returns ``pipe``. Raises ``OutputSetError`` on any mismatch."""
    directory = os.path.abspath(os.fspath(directory))
    root, adapter = (os.path.dirname(directory), directory) if os.path.basename(directory) == "adapter" else (
        directory, os.path.join(directory, "adapter"))
    verify_output_set(root)
    if not os.path.isdir(adapter):
        raise OutputSetError(f"output set {root!r} has no adapter/ (only optimize writes one)")
    kw = {} if adapter_name is None else {"adapter_name": adapter_name}
    pipe.load_lora_weights(adapter, **kw)
    return pipe


# Plots are drawn at 96 dpi, the page's CSS pixels per inch, and shown at their pixel width (demo's index.html sets
# width/height from the PNG): a font of N pt in the figure is then N pt (N * 96 / 72 px) on the page, not downscaled.
PLOT_DPI = 96
# 640 px wide: the demo's 4-column GIF strip (4 x 32 px frames shown 5x) is 640 px, and the plot sits under it.
PLOT_WIDTH_PX = 640
# Font sizes in points for every plot's text: 10 pt = 13.3 px at 96 dpi, the smallest; labels 11 pt = 14.7 px.
PLOT_FONTS = {"font.size": 10, "axes.labelsize": 11, "xtick.labelsize": 10, "ytick.labelsize": 10,
              "legend.fontsize": 10}


def reward_figure(history, questions):
    """The matplotlib figure of ``save_reward_plot``: PLOT_WIDTH_PX wide at PLOT_DPI, legend under the axes."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    # a question in the legend: wrapped at 70 characters (about 500 px at 10 pt), at most 2 lines
    labels = [textwrap.fill(q, width=70, max_lines=2, placeholder="...") for q in questions]
    lines = sum(label.count("\n") + 1 for label in labels)
    with plt.rc_context(PLOT_FONTS):
        # 2.6 in (250 px) for the axes and their labels, plus 0.24 in (23 px) per legend line under them
        fig = plt.figure(figsize=(PLOT_WIDTH_PX / PLOT_DPI, 2.6 + 0.24 * lines), dpi=PLOT_DPI, layout="constrained")
        ax = fig.add_subplot()
        steps = [h.step for h in history]
        for qi, label in enumerate(labels):
            ax.plot(steps, [h.p_yes[qi] for h in history], marker="o", label=label)
        ax.set_xlabel("optimization step")
        ax.set_ylabel('P("Yes")')
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(alpha=0.3)
        # outside the axes: curves near 0 or 1 (most of them) are never covered
        fig.legend(loc="outside lower center", ncols=1, frameon=False)
    return fig


def save_reward_plot(history, questions, path) -> str:
    """PNG of P(Yes) per query over optimization steps (one line per question)."""
    import io

    import matplotlib.pyplot as plt

    fig = reward_figure(history, questions)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _write_frames(frames: torch.Tensor, summary: dict, out_dir: str, fps: int) -> None:
    from .reasoner import export_video

    export_video(frames[0], os.path.join(out_dir, "video.mp4"), fps=fps)
    export_video(frames[0], os.path.join(out_dir, "video.gif"), fps=fps)
    atomic_write_json(os.path.join(out_dir, "result.json"), summary)


def _paths(out_dir: str) -> dict:
    return {name: os.path.join(out_dir, name) for name in sorted(os.listdir(out_dir))}


def save_frames_result(frames: torch.Tensor, summary: dict, out_dir, fps: int = 8) -> dict:
    """video.mp4, video.gif, result.json and manifest.json for any method, as one set (``commit_dir``).

    Args: frames (1, F, 3, H, W) float in [0, 1]; summary: JSON-ready dict. Returns {name: path}."""
    out_dir = commit_output_set(lambda d: _write_frames(frames, summary, d, fps), out_dir)
    return _paths(out_dir)


def save_optimize_result(result, out_dir, fps: int = 8, videos: bool = True) -> dict:
    """All files of an ``OptimizeResult`` as one set: video.mp4, video.gif, adapter/ (``result.adapter``, the weights
    the result holds, whatever the reasoner holds now), history.json, reward.png, result.json, manifest.json.
    ``videos=False``: adapter/, history.json and result.json only (what a nearly full disk may still take)."""

    def write(d):
        if videos:
            _write_frames(result.frames, result.summary(), d, fps)
        else:
            atomic_write_json(os.path.join(d, "result.json"), result.summary())
        reasoner = result.reasoner
        current = reasoner.snapshot_lora()
        try:
            reasoner.restore_lora(result.adapter)
            reasoner.save_adapter(os.path.join(d, "adapter"))
        finally:
            reasoner.restore_lora(current)
        atomic_write_json(os.path.join(d, "history.json"), [h.to_dict() for h in result.history])
        if videos:
            save_reward_plot(result.history, result.queries.questions, os.path.join(d, "reward.png"))

    return _paths(commit_output_set(write, out_dir))
