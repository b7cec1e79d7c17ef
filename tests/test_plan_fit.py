"""optimize's memory check (vlmteach_fast.plan.fit): the user's own models copied to the meta device account like
the named shapes, a run over the limit is refused before any model call with the settings that fit, and the knobs
are checked at construction."""

import pytest
import torch

from vlmteach_fast import OptimizeConfig, SamplingConfig, optimize
from vlmteach_fast.config_io import load_config
from vlmteach_fast.instance import as_reasoner
from vlmteach_fast.plan import shapes
from vlmteach_fast.plan.account import account_models
from vlmteach_fast.plan.phases import VARIANTS
from vlmteach_fast.plan.fit import MemoryPlanError, check_fits, check_run, meta_copy

GEO = dict(zip(("num_frames", "height", "width"), shapes.DRY_GEOMETRY))
FRAME = shapes.first_frame(GEO["height"], GEO["width"])


def _models():
    pipe = shapes.wan_ti2v_pipeline(True, device="cpu")
    return as_reasoner(pipe), shapes.qwen25_vl_teacher(True, device="cpu")


def _config(offload=False, **kw):
    # the named shapes' text length, so the two accounts see the same prompt
    sampling = SamplingConfig(**GEO, max_sequence_length=16, offload_text_encoder=offload)
    return OptimizeConfig(sampling=sampling, progress=False, **kw)


@pytest.fixture(scope="module")
def models():
    return _models()


@pytest.fixture(scope="module")
def peaks(models):
    """Accounted peak bytes of the dry models: plain, and with the text encoder offloaded."""
    reasoner, teacher = models
    plain = check_fits(reasoner, teacher, _config(), GEO, shapes.QUESTIONS, FRAME, 2**40, 0)["peak_bytes"]
    off = _config(offload=True)
    offload = check_fits(reasoner, teacher, off, GEO, shapes.QUESTIONS, FRAME, 2**40, 0)["peak_bytes"]
    return plain, offload


def test_meta_copy_holds_no_data_and_leaves_the_original(models):
    reasoner, teacher = models
    copy = meta_copy(reasoner)
    params = list(copy.pipe.transformer.parameters()) + list(copy.pipe.vae.parameters())
    assert params and all(p.is_meta for p in params)
    assert not any(p.is_meta for p in reasoner.pipe.transformer.parameters())
    lora = copy.lora_parameters()
    assert lora and all(p.is_meta and p.requires_grad for p in lora)
    t = meta_copy(teacher)
    assert all(p.is_meta for p in t.model.parameters()) and t.config == teacher.config


def test_users_models_account_like_the_named_shapes(peaks):
    """The meta copy of real models gives the account of the same shapes built on the meta device (both wrapped
    before the account, as a user's pipeline is once ``optimize`` has run on it)."""
    named = account_models(as_reasoner(shapes.wan_ti2v_pipeline(True, device="meta")),
                           shapes.qwen25_vl_teacher(True, device="meta"), shapes.DRY_GEOMETRY, VARIANTS["one_step"],
                           max_sequence_length=16)
    assert peaks[0] == named["peak_bytes"]
    assert peaks[1] < peaks[0]  # the text encoder's weights leave the device
    # models already on the meta device: the copy must not share their storages, or the offload would free nothing
    meta = (as_reasoner(shapes.wan_ti2v_pipeline(True, device="meta")), shapes.qwen25_vl_teacher(True, device="meta"))
    off = check_fits(*meta, _config(offload=True), GEO, shapes.QUESTIONS, FRAME, 2**40, 0)["peak_bytes"]
    assert off == peaks[1]


def test_optimize_refuses_before_any_model_call_naming_what_fits(peaks, monkeypatch):
    reasoner, teacher = _models()
    calls = []
    for obj, name in ((teacher, "synthesize_queries"), (reasoner, "prepare")):  # the originals, not the meta copies
        real = getattr(type(obj), name)
        monkeypatch.setattr(type(obj), name, lambda self, *a, _o=obj, _n=name, _f=real, **k: (
            calls.append(_n) if self is _o else None) or _f(self, *a, **k))
    limit = (peaks[0] + peaks[1]) // 2  # the plain run is over it, the offloaded one under
    with pytest.raises(MemoryPlanError, match=r"offload_text_encoder=True.*sampling: \{offload_text_encoder: true\}") \
            as err:
        optimize(reasoner, teacher, "move the ball", image=FRAME, config=_config(memory_limit=limit,
                                                                                  memory_headroom=0))
    assert calls == []
    assert err.value.fits == {"offload_text_encoder": True} and err.value.needed == peaks[0]


def test_refusal_when_no_setting_fits(models, peaks):
    reasoner, teacher = models
    with pytest.raises(MemoryPlanError, match="no memory setting makes it fit") as err:
        check_fits(reasoner, teacher, _config(), GEO, shapes.QUESTIONS, FRAME, peaks[1] // 2, 0)
    assert err.value.fits is None


def test_a_run_that_fits_runs(models, peaks):
    reasoner, teacher = models
    cfg = _config(memory_limit=peaks[0] + 1, memory_headroom=0, max_steps=1, score_initial=False)
    result = optimize(reasoner, teacher, "move the ball", image=FRAME, queries=["Is the ball red?"], config=cfg)
    assert len(result.history) == 1


def test_auto_checks_only_on_cuda(models):
    reasoner, teacher = models
    assert check_run(reasoner, teacher, _config(), FRAME, GEO) == {"checked": False}  # a CPU run: no device limit
    assert check_run(reasoner, teacher, _config(memory_limit=None), FRAME, GEO) == {"checked": False}
    checked = check_run(reasoner, teacher, _config(memory_limit="1TiB"), FRAME, GEO)
    assert checked["checked"] and checked["limit_bytes"] == 2**40


@pytest.mark.parametrize("kw, match", [(dict(memory_limit="lots"), "memory_limit"),
                                       (dict(memory_headroom="auto"), "memory_headroom"),
                                       (dict(memory_limit=-1.5e9), "memory_limit")])
def test_memory_knobs_checked_at_construction(kw, match):
    with pytest.raises(ValueError, match=match):
        OptimizeConfig(**kw)


def test_config_file_sets_the_teachers_reward_fields(models):
    from vlmteach_fast.methods import run_method

    _, options = load_config({"reward": {"checkpoint_layers": True}})
    assert options["reward"] == {"checkpoint_layers": True}
    with pytest.raises(ValueError, match="reward: unknown key"):
        load_config({"reward": {"checkpoint": True}})
    reasoner, teacher = _models()
    before = teacher.config
    with pytest.raises(TypeError, match="reward"):
        run_method("baseline", reasoner, teacher, "a ball", image=FRAME, queries=["Is it red?"],
                   config=_config(), reward=True)
    run_method("baseline", reasoner, teacher, "a ball", image=FRAME, queries=["Is it red?"], config=_config(),
               reward={"checkpoint_layers": True})
    assert teacher.config.checkpoint_layers and teacher.config.process_frames == before.process_frames


def test_bench_hash_counts_reward_fields_not_the_memory_check():
    from vlmteach_fast.evaluate.runner import BenchConfig

    def h(options=None, **kw):
        return BenchConfig(method="optimize", out="x", optimize=OptimizeConfig(**kw),
                           options=options or {"n": 5, "rounds": 0}).hash()

    assert h() == h(memory_limit="40GiB", memory_headroom=0)
    assert h() != h({"n": 5, "rounds": 0, "reward": {"checkpoint_layers": True}})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from vlmteach_fast.testing import tiny_wan_pipeline
    from vlmteach_fast.testing.vlm import make_qwen_vl

    root = tmp_path_factory.mktemp("ckpt")
    tiny_wan_pipeline("ti2v").save_pretrained(root / "pipe")
    model, tok = make_qwen_vl("qwen2_5_vl")
    model.save_pretrained(root / "vlm")
    tok.save_pretrained(root / "vlm")
    return str(root / "pipe"), str(root / "vlm")


def test_plan_accounts_checkpoint_folders_like_the_loaded_models(folders):
    """`vlmteach-fast plan` on the user's folders (built from their configs, no weights read) gives the account of
    the same checkpoints loaded with their weights."""
    from diffusers import DiffusionPipeline

    from vlmteach_fast.plan.planner import plan
    from vlmteach_fast.teacher import VLMTeacher

    planned = plan(*folders, num_frames=9, height=64, width=64, gpu_memory="1GiB", headroom=0)
    assert planned["fits"] and planned["settings"] == {"offload_text_encoder": False, "checkpoint_layers": False,
                                                       "block_checkpointing": False}
    pipe = DiffusionPipeline.from_pretrained(folders[0], torch_dtype=torch.bfloat16)
    teacher = VLMTeacher.from_pretrained(folders[1], dtype=torch.bfloat16)
    geo = {"num_frames": 9, "height": 64, "width": 64}
    config = OptimizeConfig(sampling=SamplingConfig(**geo, max_sequence_length=512), progress=False)
    loaded = check_fits(as_reasoner(pipe), teacher, config, geo, shapes.QUESTIONS, shapes.first_frame(64, 64),
                        "1GiB", 0)
    assert planned["peak_gib"] * 2**30 == loaded["peak_bytes"]


def test_plan_refuses_bad_folders_and_geometry_in_one_line(folders, tmp_path):
    from vlmteach_fast.plan.planner import plan

    with pytest.raises(ValueError, match="model_index.json"):
        plan(str(tmp_path), folders[1], num_frames=9, height=64, width=64)
    with pytest.raises(ValueError, match="num_frames"):
        plan(*folders, num_frames=10, height=64, width=64)
