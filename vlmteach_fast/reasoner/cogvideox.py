"""CogVideoX image-to-video adapter (``CogVideoXImageToVideoPipeline``, CogVideoX 1.0 and 1.5 layouts).

Differences from the flow-matching families, all as in diffusers' pipeline:
- The transformer takes (B, F, C, h, w) latents (frames before channels) with the image latents (first frame = VAE
  posterior sample of the image, scaled; zeros after) concatenated on the channel axis; this adapter keeps the
  reasoner's (B, C, F, h, w) layout outside and permutes at the boundary.
- A DDIM update over ``alphas_cumprod`` (CogVideoXDDIMScheduler's formula): x0 from the epsilon or v prediction,
  then x_prev = a_t * x + b_t * x0 with a_t = sqrt((1 - abar_prev) / (1 - abar_t)), b_t = sqrt(abar_prev) -
  sqrt(abar_t) * a_t. The step's two coefficients are (abar_t, abar_prev); the last step goes to abar = 1 (x0).
  Pipelines that ship ``CogVideoXDPMScheduler`` are sampled with this deterministic DDIM update on the same alphas:
  their own multistep solver keeps state across steps (and can inject noise), which a checkpointed step could not
  replay, so ``sample`` does not reproduce ``pipe(...)`` bit for bit there (it does with the DDIM scheduler).
- RoPE / learned positional embeddings and the 1.5 ``ofs`` embedding are passed exactly as the pipeline does.
"""

from __future__ import annotations

import copy
import math

import torch

from ..checks import check_int
from .family import VideoFamily
from .video_io import image_to_tensor

__all__ = ["CogVideoXFamily"]


class CogVideoXFamily(VideoFamily):
    name = "cogvideox"
    pipeline_classes = ("CogVideoXImageToVideoPipeline",)
    # CogVideoX blocks use joint attention (text and video tokens in one attention): attn1 is the only one.
    attention_targets = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0")
    ffn_targets = ("ff.net.0.proj", "ff.net.2")

    def __init__(self, pipe):
        super().__init__(pipe)
        self.temporal = int(pipe.vae_scale_factor_temporal)
        self.spatial = int(pipe.vae_scale_factor_spatial)
        cfg = self.transformer.config
        self.p = int(cfg.patch_size)
        self.pt = cfg.patch_size_t
        pred = pipe.scheduler.config.get("prediction_type", "epsilon")
        if pred not in ("epsilon", "v_prediction"):
            raise ValueError(f"scheduler prediction_type must be 'epsilon' or 'v_prediction', got {pred!r}")
        self.prediction_type = pred

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.vae.config.latent_channels)

    def size_multiple(self):
        return self.spatial * self.p, self.spatial * self.p

    @property
    def default_size(self):
        # the pipeline's default: the transformer's sample size (latent pixels) x the VAE's compression
        cfg = self.transformer.config
        return int(cfg.sample_height) * self.spatial, int(cfg.sample_width) * self.spatial

    def fixed_size(self):
        # CogVideoX-5b-I2V: learned positional embeddings exist for the sample size only (diffusers raises at the
        # first denoiser call otherwise, after the teacher has already written its questions)
        return self.default_size if self.transformer.config.use_learned_positional_embeddings else None

    def check_geometry(self, num_frames, height, width):
        super().check_geometry(num_frames, height, width)
        lat_f = (num_frames - 1) // self.temporal + 1
        if self.pt is not None and lat_f % self.pt:
            # CogVideoX 1.5 would pad latent frames at the start and drop them after sampling; not implemented.
            step = self.temporal * self.pt
            raise ValueError(
                f"`num_frames` must give a multiple of patch_size_t={self.pt} latent frames "
                f"(num_frames = k * {step} + {self.temporal + 1}), got {num_frames} ({lat_f} latent frames)"
            )

    def prepare(self, prompt, image, negative_prompt, num_frames, height, width, seed, guidance_scale,
                max_sequence_length):
        pipe = self.pipe
        pos, neg = self._checked_prompt_embeds(prompt, image, negative_prompt, num_frames, height, width,
                                               guidance_scale, max_sequence_length)
        device = self.device
        with torch.no_grad():
            img = image_to_tensor(image, height, width).to(device, dtype=pos.dtype)
            # The seeded generator draws the image latent, then the noise, in the pipeline's order.
            gen = torch.Generator("cpu").manual_seed(seed)
            noise, image_latents = pipe.prepare_latents(img, 1, self.transformer.config.in_channels // 2, num_frames,
                                                        height, width, torch.float32, device, gen, None)
            conditions = {"image_latents": image_latents}  # (1, F_lat, C, h, w)
            if self.transformer.config.use_rotary_positional_embeddings:
                cos, sin = pipe._prepare_rotary_positional_embeddings(height, width, noise.size(1), device)
                conditions["rope_cos"], conditions["rope_sin"] = cos, sin
        noise = noise.permute(0, 2, 1, 3, 4).contiguous()  # -> (1, C, F_lat, h, w)
        return self._prepared(noise, pos, neg, num_frames, height, width, seed, guidance_scale, conditions)

    def schedule(self, steps, prepared, sigmas=None):
        if sigmas is not None:
            raise ValueError("`sigmas` is for flow-matching pipelines (Wan, LTX); CogVideoX samples DDIM timesteps "
                             "from its scheduler: pass `steps` only")
        check_int("steps", steps)
        sched = copy.deepcopy(self.pipe.scheduler)
        sched.set_timesteps(steps, device="cpu")
        abar = sched.alphas_cumprod
        stride = sched.config.num_train_timesteps // steps  # the scheduler's own prev_timestep rule
        coeffs = []
        for t in sched.timesteps.tolist():
            prev = t - stride
            coeffs.append((float(abar[t]), float(abar[prev]) if prev >= 0 else float(sched.final_alpha_cumprod)))
        return sched.timesteps.to(torch.float32), torch.tensor(coeffs, dtype=torch.float64)

    def step(self, latents, model_output, abar_t, abar_prev):
        x = latents.to(torch.float32)
        out = model_output.to(torch.float32)
        if self.prediction_type == "v_prediction":
            x0 = math.sqrt(abar_t) * x - math.sqrt(1 - abar_t) * out
        else:
            x0 = (x - math.sqrt(1 - abar_t) * out) / math.sqrt(abar_t)
        a = math.sqrt((1 - abar_prev) / (1 - abar_t))
        b = math.sqrt(abar_prev) - math.sqrt(abar_t) * a
        return a * x + b * x0

    def model_input(self, prepared, latents, t):
        c = prepared.conditions
        hidden = torch.cat([latents.permute(0, 2, 1, 3, 4), c["image_latents"].to(latents.dtype)], dim=2)
        # The pipeline passes an integer timestep; keep its dtype so the time embedding sees the same value.
        timestep = t.to(torch.int64).expand(latents.shape[0])
        extra = {}
        if "rope_cos" in c:
            extra["image_rotary_emb"] = (c["rope_cos"], c["rope_sin"])
        if self.transformer.config.ofs_embed_dim is not None:
            extra["ofs"] = latents.new_full((1,), 2.0)
        return hidden, timestep, extra

    def model_output(self, prepared, out):
        return out.permute(0, 2, 1, 3, 4)  # (B, F, C, h, w) -> (B, C, F, h, w)

    def to_vae_space(self, latents):
        return latents / self.pipe.vae_scaling_factor_image

    def decode(self, latents):
        vae = self.pipe.vae
        video = vae.decode(self.to_vae_space(latents.to(torch.float32)).to(vae.dtype)).sample  # (B, 3, F, H, W)
        return (video.to(torch.float32) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)

    def pixel_frame_index(self, num_latent_frames):
        return [j * self.temporal for j in range(num_latent_frames)]
