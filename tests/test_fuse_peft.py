"""fuse_peft_lora on a tiny diffusers WanTransformer3DModel with a PEFT LoRA."""

import pytest
import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from vlmteach_fast.nn import FusedLoRALinear, fuse_peft_lora, unfuse_peft_lora
from vlmteach_fast.testing import tiny_wan_transformer

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]


def wan_inputs():
    g = torch.Generator().manual_seed(7)
    return dict(hidden_states=torch.randn(1, 16, 2, 8, 8, generator=g), timestep=torch.tensor([500]),
                encoder_hidden_states=torch.randn(1, 6, 32, generator=g), return_dict=False)


def adapted(config=None):
    model = tiny_wan_transformer()
    model.add_adapter(config or LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False))
    return model


def lora_params(model):
    return {n: p for n, p in model.named_parameters() if "lora_" in n}


def test_fused_matches_unfused_outputs_and_lora_grads():
    model = adapted()
    inputs = wan_inputs()
    ref = model(**inputs)[0]
    ref.square().mean().backward()
    ref_grads = {n: p.grad.clone() for n, p in lora_params(model).items()}
    model.zero_grad(set_to_none=True)

    report = fuse_peft_lora(model)
    assert len(report.swapped) == 2 * 2 * 4 + 2 * 2 and not report.skipped  # 2 blocks x 2 attns x 4 + 2 x FFN
    out = model(**inputs)[0]
    out.square().mean().backward()
    # fp32 end to end; the fused op sums in another order than PEFT's separate matmuls, nothing more.
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for n, p in lora_params(model).items():
        torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-6, msg=lambda m: f"{n}: {m}")
    frozen = [n for n, p in model.named_parameters() if "lora_" not in n]
    assert frozen and all(model.get_parameter(n).grad is None for n in frozen)


def test_fused_layers_really_run_the_fused_op(monkeypatch):
    import vlmteach_fast.nn.lora_linear as mod

    calls = []
    real = mod.lora_linear
    monkeypatch.setattr(mod, "lora_linear", lambda *a: calls.append(1) or real(*a))
    model = adapted()
    fuse_peft_lora(model)
    model(**wan_inputs())
    assert len(calls) == 20


def test_saved_adapter_after_fused_training_loads_into_fresh_model_with_plain_peft(tmp_path):
    from diffusers import WanPipeline
    from safetensors.torch import load_file, save_file

    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=True)
    model = adapted(config)
    keys_before = set(get_peft_model_state_dict(model))
    fuse_peft_lora(model)
    opt = torch.optim.AdamW(lora_params(model).values(), lr=1e-2)
    inputs = wan_inputs()
    for _ in range(3):
        loss = model(**inputs)[0].square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        trained = model(**inputs)[0]
    state = get_peft_model_state_dict(model)
    assert set(state) == keys_before

    # (1) plain PEFT: safetensors round trip + set_peft_model_state_dict on a fresh model
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "adapter.safetensors"))
    fresh = adapted(config)
    set_peft_model_state_dict(fresh, load_file(str(tmp_path / "adapter.safetensors")))
    with torch.no_grad():
        torch.testing.assert_close(fresh(**inputs)[0], trained, rtol=1e-5, atol=1e-5)
        base_out = tiny_wan_transformer()(**inputs)[0]
    assert (trained - base_out).abs().max() > 1e-3  # training changed the model: the round trip is not vacuous

    # (2) diffusers' format: the pipeline class's saver, loaded the way load_lora_weights loads a transformer
    WanPipeline.save_lora_weights(str(tmp_path / "diffusers"), transformer_lora_layers=state,
                                  transformer_lora_adapter_metadata=config.to_dict())
    fresh2 = tiny_wan_transformer()
    fresh2.load_lora_adapter(str(tmp_path / "diffusers"), weight_name="pytorch_lora_weights.safetensors",
                             prefix="transformer")
    with torch.no_grad():
        torch.testing.assert_close(fresh2(**inputs)[0], trained, rtol=1e-5, atol=1e-5)


def test_skips_layers_it_cannot_fuse_and_says_why():
    model = adapted(LoraConfig(r=4, lora_alpha=8, target_modules=["to_q"], lora_dropout=0.1))
    report = fuse_peft_lora(model)
    assert not report.swapped and len(report.skipped) == 4
    assert all("lora_dropout p=0.1" in why for why in report.skipped.values())

    model = adapted(LoraConfig(r=4, target_modules=["to_q"]))
    model.add_adapter(LoraConfig(r=2, target_modules=["to_q"]), adapter_name="second")
    model.set_adapters(["default", "second"])
    report = fuse_peft_lora(model)
    assert not report.swapped and all("2 active adapters" in w for w in report.skipped.values()), report

    model = adapted(LoraConfig(r=4, target_modules=["to_q"], use_dora=True))
    report = fuse_peft_lora(model)
    assert not report.swapped and all("DoRA" in w for w in report.skipped.values()), report
    assert "left 4 alone" in str(report)


def test_state_changes_after_fusing_defer_to_peft():
    """Disabling adapters after fusing must give the base model's output, not the fused LoRA's."""
    model = adapted()
    inputs = wan_inputs()
    fuse_peft_lora(model)
    with torch.no_grad():
        with_lora = model(**inputs)[0]
        model.disable_adapters()
        without = model(**inputs)[0]
        base = tiny_wan_transformer()(**inputs)[0]
    torch.testing.assert_close(without, base)
    assert (with_lora - base).abs().max() > 1e-3


def test_unfuse_restores_peft_class_and_keeps_weights():
    from peft.tuners.lora.layer import Linear as PeftLinear

    model = adapted()
    inputs = wan_inputs()
    fuse_peft_lora(model)
    with torch.no_grad():
        fused_out = model(**inputs)[0]
    report = unfuse_peft_lora(model)
    assert len(report.swapped) == 20
    assert all(type(m) is PeftLinear for m in model.modules() if isinstance(m, PeftLinear))
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs)[0], fused_out, rtol=1e-5, atol=1e-5)


def test_fused_lora_linear_module():
    base = torch.nn.Linear(24, 16)
    layer = FusedLoRALinear(base, r=4, lora_alpha=8)
    x = torch.randn(3, 5, 24)
    torch.testing.assert_close(layer(x), base(x))  # B starts at zero: the layer starts as the base
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    torch.testing.assert_close(layer(x), base(x) + 2.0 * (x @ a.t()) @ b.t(), rtol=1e-5, atol=1e-5)
    layer(x).sum().backward()
    assert base.weight.grad is None and a.grad is not None and b.grad is not None
    assert set(layer.state_dict()) == {"base_layer.weight", "base_layer.bias", "lora_A.default.weight",
                                       "lora_B.default.weight"}
    with pytest.raises(ValueError, match="`r` must be an integer in 1..256, got 0"):
        FusedLoRALinear(base, r=0)
    with pytest.raises(TypeError, match="`base_layer` must be a torch.nn.Linear, got Conv1d"):
        FusedLoRALinear(torch.nn.Conv1d(2, 2, 1))
    with pytest.raises(TypeError, match="`model` must be a torch.nn.Module, got int"):
        fuse_peft_lora(3)
