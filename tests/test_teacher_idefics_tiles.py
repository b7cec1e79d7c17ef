"""Idefics3 / SmolVLM teachers score each frame as one global image; the released processors split a frame into
tiles plus the global image. This measures how far the two inputs' scores are apart on a real-structure tiny
Idefics3 (SigLIP + pixel-shuffle connector + Llama, 13 images per 832 x 480 frame as with the released configs'
4 x encoder-size longest edge), and checks that the difference is said where users look (docstring, warning,
``doctor``)."""

import warnings

import numpy as np
import pytest
import torch

from vlmteach_fast.testing.vlm import make_idefics3, make_idefics_image_processor
from vlmteach_fast.teacher import Queries, RewardConfig, VLMTeacher

QUESTIONS = ["Is it red ?", "Does the ball reach the goal ?", "Is the square green ?"]


def _frames(n=6, h=480, w=832):
    """Smooth frames with a bright block at a different place in each: structured, not white noise."""
    g = torch.Generator().manual_seed(0)
    out = torch.zeros(n, 3, h, w)
    for i in range(n):
        out[i] = torch.rand(3, 1, 1, generator=g) * 0.6
        y, x = int(torch.randint(0, h - 120, (1,), generator=g)), int(torch.randint(0, w - 200, (1,), generator=g))
        out[i, :, y:y + 120, x:x + 200] = torch.rand(3, 1, 1, generator=g) * 0.4 + 0.6
    return out


def _tiled_scores(model, tok, frames, questions, cfg, yes):
    """log P(Yes) of the stock model on its usual input: the HF processor with image splitting on."""
    from PIL import Image
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tok.add_tokens([f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)], special_tokens=True)
    ip = Idefics3ImageProcessorPil(do_image_splitting=True, size={"longest_edge": 256},
                                   max_image_size={"longest_edge": 64})
    proc = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=16)
    out = torch.zeros(len(frames), len(questions))
    for i, f in enumerate(frames):
        pil = Image.fromarray((f.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
        for q, question in enumerate(questions):
            text = f"{tok.bos_token}User:<image>{question}{cfg.question_suffix}<end_of_utterance>\nAssistant:"
            enc = proc(text=[text], images=[[pil]], return_tensors="pt")
            assert enc["pixel_values"].shape[1] == 13  # 12 tiles + the global image, as with the real configs
            logits = model(**enc).logits[0, -1]
            out[i, q] = logits.log_softmax(-1)[yes]
    return out


def _spearman(a, b):
    ra, rb = a.argsort().argsort().float(), b.argsort().argsort().float()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def test_global_only_scores_differ_from_the_tiled_input_and_the_difference_is_measured(capsys):
    model, tok = make_idefics3("idefics3")
    cfg = RewardConfig(goal_frames=1, process_frames=1)
    teacher = VLMTeacher(model, (tok, make_idefics_image_processor(64, 256)), cfg)
    frames = _frames()
    with torch.no_grad():
        ours = torch.stack([teacher.reward(f[None, None], Queries(QUESTIONS[0], QUESTIONS[1:])).log_probs[0]
                            for f in frames])  # (frames, questions)
        tiled = _tiled_scores(model, tok, frames, QUESTIONS, cfg, teacher.yes_id)
    diff = (ours - tiled).abs()
    rho = _spearman(ours.flatten(), tiled.flatten())
    with capsys.disabled():
        print(f"\nIdefics3 tiny, 6 frames x 3 questions: |log P(yes) global-only - tiled| mean {diff.mean():.3f} "
              f"max {diff.max():.3f}; P(yes) mean {ours.exp().mean():.3f} vs {tiled.exp().mean():.3f}; "
              f"rank correlation {rho:.2f}")
    assert diff.max() > 1e-2  # the two inputs really give different scores: what the docs say


def test_the_global_only_input_is_said_where_users_look():
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    from vlmteach_fast.teacher.vlm import FAMILY_NOTES

    assert "global image only" in VLMTeacher.from_pretrained.__doc__
    assert "global image only" in FAMILY_NOTES["idefics3"] and FAMILY_NOTES["smolvlm"] == FAMILY_NOTES["idefics3"]
    model, tok = make_idefics3("smolvlm")
    splitting = Idefics3ImageProcessorPil(do_image_splitting=True, size={"longest_edge": 256},
                                          max_image_size={"longest_edge": 64})
    with pytest.warns(UserWarning, match="global image only"):
        VLMTeacher(model, (tok, splitting))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VLMTeacher(model, (tok, make_idefics_image_processor()))  # no splitting configured: nothing to warn about


def test_doctor_prints_what_each_teacher_family_sees(capsys):
    from vlmteach_fast.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "teacher families" in out and "idefics3" in out and "global image only" in out
