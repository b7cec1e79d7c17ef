"""The reward and quality-vs-cost plots are legible where they are shown: every text is at least 11 px in the PNG,
the legend covers no curve, and index.html shows each plot at its own pixel size (no downscaling)."""

import os
import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from vlmteach_fast import demo  # noqa: E402
from vlmteach_fast.outputs import PLOT_WIDTH_PX, reward_figure, save_reward_plot  # noqa: E402

QUESTIONS = ["Is the red ball on the green square in the final frame?",
             "Does the red ball move one cell at a time without crossing the gray walls?",
             "Is there exactly one red ball in every frame?", "Does the background stay unchanged?"]
HISTORY = [SimpleNamespace(step=s, p_yes=[0.02 + 0.3 * s, 0.05, 0.9, 0.99]) for s in range(3)]
SUMMARY = {m: {"rule_score": 0.1 + 0.05 * i, "pass_rate": 0.0, "teacher": 0.1, "fooled": 0.0, "seconds": 0.2 + 0.3 * i}
           for i, m in enumerate(("plain", "best_of_5", "optimize"))}


def _png_size(path):
    head = open(path, "rb").read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _texts(fig):
    fig.canvas.draw()  # tick labels exist only once drawn
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("make", [lambda: reward_figure(HISTORY, QUESTIONS),
                                  lambda: demo._quality_vs_cost_figure(SUMMARY)], ids=["reward", "quality_vs_cost"])
def test_plot_text_is_at_least_11_px_and_the_legend_covers_no_axes(make):
    fig = make()
    try:
        assert fig.get_figwidth() * fig.dpi == pytest.approx(PLOT_WIDTH_PX)
        texts = _texts(fig)
        assert len(texts) > 10  # ticks, axis labels and legend entries all counted
        small = {t.get_text(): t.get_fontsize() * fig.dpi / 72 for t in texts
                 if t.get_fontsize() * fig.dpi / 72 < 11}
        assert not small, f"text under 11 px at the figure's own size: {small}"
        renderer = fig.canvas.get_renderer()
        (ax,), legend = fig.axes, fig.legends[0]
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    finally:
        plt.close(fig)


def test_index_html_shows_each_plot_at_its_pixel_size(tmp_path):
    out = str(tmp_path)
    save_reward_plot(HISTORY, QUESTIONS, os.path.join(out, "instance_000_reward.png"))
    rows = [{"instance": 0, "method": m, "rule_score": 0.1, "passed": False} for m in SUMMARY]
    media = [dict(instance=0, prompt="Move the red ball onto the green square.", columns=["ground truth", *SUMMARY],
                  gif="instance_000.gif", plot="instance_000_reward.png")]
    demo._write_html(out, SUMMARY, rows, media)
    page = (tmp_path / "index.html").read_text()
    plots = re.findall(r"<img class='plot' src='([^']+)' width='(\d+)' height='(\d+)'>", page)
    assert sorted(p[0] for p in plots) == ["instance_000_reward.png", "quality_vs_cost.png"]
    for name, w, h in plots:
        assert (int(w), int(h)) == _png_size(os.path.join(out, name)), name
        assert int(w) == PLOT_WIDTH_PX <= 1100  # fits the page's 1100 px body, so max-width:100% never shrinks it
    style = re.search(r"<style>(.*?)</style>", page).group(1)
    # no rule that sizes every img (the GIFs' fixed height), and none that fixes a plot's height or width in px
    assert not re.search(r"(^|})img\{", style), style
    plot_rule = re.search(r"img\.plot\{([^}]*)\}", style).group(1)
    assert not re.search(r"(^|;)(height|width):\s*\d", plot_rule), plot_rule
