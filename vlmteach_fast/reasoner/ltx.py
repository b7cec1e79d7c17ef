"""LTX-Video image-to-video adapter (``LTXImageToVideoPipeline``).

How LTX conditions on the image, as in diffusers' pipeline: the first latent frame *is* the image latent (sampled
from the VAE posterior with the instance's generator), every token of that frame gets timestep 0 (the
``conditioning_mask``), and the Euler update skips it, so it stays clean. The transformer works on packed tokens
(B, S, C * p_t * p * p); this adapter packs on the way in and unpacks on the way out, so the reasoner and the
decoders see ordinary (B, C, F_lat, h, w) latents like every other family. The sigma schedule is the pipeline's:
linspace(1, 1/T, T) with the resolution-dependent shift ``mu`` (``calculate_shift`` of the token count).
"""

from __future__ import annotations

import numpy as np
import torch

from .family import VideoFamily
from .video_io import image_to_tensor

__all__ = ["LTXFamily"]


def _calculate_shift(seq_len, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15):
    # diffusers.pipelines.ltx.pipeline_ltx_image2video.calculate_shift (a linear ramp of mu in the token count)
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return seq_len * m + (base_shift - m * base_seq_len)


class LTXFamily(VideoFamily):
    name = "ltx"
    pipeline_classes = ("LTXImageToVideoPipeline",)
    attention_targets = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                         "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")
    ffn_targets = ("ff.net.0.proj", "ff.net.2")
    # The pipeline's default frame rate; it only enters the RoPE interpolation scale (temporal ratio / frame rate).
    frame_rate = 25

    def __init__(self, pipe):
        super().__init__(pipe)
        self.temporal = int(pipe.vae_temporal_compression_ratio)
        self.spatial = int(pipe.vae_spatial_compression_ratio)
        self.p = int(pipe.transformer_spatial_patch_size)
        self.pt = int(pipe.transformer_temporal_patch_size)

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.vae.config.latent_channels)

    default_size = (512, 704)  # LTXImageToVideoPipeline's defaults

    def size_multiple(self):
        return self.spatial * self.p, self.spatial * self.p

    def prepare(self, prompt, image, negative_prompt, num_frames, height, width, seed, guidance_scale,
                max_sequence_length):
        pipe = self.pipe
        pos, pos_mask, neg, neg_mask = self._checked_prompt_embeds(prompt, image, negative_prompt, num_frames, height,
                                                                   width, guidance_scale, max_sequence_length)
        device = self.device
        guided = guidance_scale > 1.0
        with torch.no_grad():
            img = image_to_tensor(image, height, width).to(device, dtype=pos.dtype)
            # One seeded CPU generator draws the image latent (posterior sample) and then the noise, in the
            # pipeline's order, so prepare(seed=s) equals pipe(generator=Generator().manual_seed(s)).
            gen = torch.Generator("cpu").manual_seed(seed)
            packed, mask = pipe.prepare_latents(img, 1, self.transformer.config.in_channels, height, width,
                                                num_frames, torch.float32, device, gen, None)
        lat_f = (num_frames - 1) // self.temporal + 1
        geom = (lat_f, height // self.spatial, width // self.spatial)
        conditions = {"conditioning_mask": mask, "prompt_attention_mask": pos_mask, "geometry": torch.tensor(geom)}
        if guided:
            conditions["negative_prompt_attention_mask"] = neg_mask
        noise = self._unpack(packed, geom)
        return self._prepared(noise, pos, neg, num_frames, height, width, seed, guidance_scale, conditions)

    def _unpack(self, packed, geom):
        f, h, w = (int(g) for g in geom)
        return self.pipe._unpack_latents(packed, f // self.pt, h // self.p, w // self.p, self.p, self.pt)

    def scheduler_kwargs(self, steps, prepared, sigmas=None):
        f, h, w = (int(g) for g in prepared.conditions["geometry"])
        cfg = self.pipe.scheduler.config
        mu = _calculate_shift(f * h * w, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                              cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
        sig = np.linspace(1.0, 1 / steps, steps) if sigmas is None else np.asarray(sigmas, dtype=np.float64)
        return {"sigmas": sig, "mu": mu}

    def model_input(self, prepared, latents, t):
        c = prepared.conditions
        f, h, w = (int(g) for g in c["geometry"])
        hidden = self.pipe._pack_latents(latents, self.p, self.pt)  # (B, S, C * pt * p * p)
        timestep = t.expand(latents.shape[0]).unsqueeze(-1) * (1 - c["conditioning_mask"])  # (B, S): 0 on frame 0
        extra = {
            "encoder_attention_mask": c["prompt_attention_mask"],
            "num_frames": f,
            "height": h,
            "width": w,
            "rope_interpolation_scale": (self.temporal / self.frame_rate, self.spatial, self.spatial),
        }
        return hidden, timestep, extra

    def uncond_extra(self, prepared, extra):
        return dict(extra, encoder_attention_mask=prepared.conditions["negative_prompt_attention_mask"])

    def model_output(self, prepared, out):
        return self._unpack(out, prepared.conditions["geometry"])

    def step(self, latents, model_output, sigma, sigma_next):
        # Frame 0 is the clean image latent: it is never moved (the pipeline steps frames 1: only).
        moved = super().step(latents[:, :, 1:], model_output[:, :, 1:], sigma, sigma_next)
        return torch.cat([latents[:, :, :1].to(moved.dtype), moved], dim=2)

    def to_vae_space(self, latents):
        vae = self.pipe.vae
        return self.pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)

    def decode(self, latents):
        vae = self.pipe.vae
        z = self.to_vae_space(latents.to(torch.float32)).to(vae.dtype)
        # decode_timestep = 0 with noise scale 0 (the pipeline's defaults): the latents enter the decoder unchanged.
        temb = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype) if vae.config.timestep_conditioning else None
        video = vae.decode(z, temb, return_dict=False)[0]  # (B, 3, F, H, W) in [-1, 1]
        return (video.to(torch.float32) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)

    def pixel_frame_index(self, num_latent_frames):
        return [j * self.temporal for j in range(num_latent_frames)]
