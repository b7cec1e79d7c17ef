"""Wan adapter: Wan2.1/2.2 text-to-video, Wan2.1 image-to-video and the Wan2.2 TI2V form.

Three ways the image enters the model (all as in diffusers' ``WanPipeline`` / ``WanImageToVideoPipeline``):
- T2V (``WanPipeline``): the transformer sees the noisy latents only.
- Wan2.1 I2V (``WanImageToVideoPipeline``, ``expand_timesteps=False``): the VAE latents of [image, zeros...] and a
  4-channel first-frame mask are concatenated to the noisy latents on the channel axis (16 + 4 + 16 = 36 channels),
  and, when the transformer has ``image_dim``, CLIP image embeddings go to its image cross-attention.
- Wan2.2 TI2V (``expand_timesteps=True``, the 5B model): the first latent frame is *replaced* by the image latent
  and every token gets its own timestep, 0 on the first frame (it is clean), t elsewhere.
Conditions are computed with the pipeline's own ``encode_prompt`` / ``prepare_latents`` / ``encode_image`` so they
match ``pipe(...)`` exactly (tests compare against it).

Wan2.2-TI2V-5B's diffusers repository loads as ``WanPipeline`` (``expand_timesteps=True``): one model for text- and
image-to-video. Given such a pipeline, the family takes an image when there is one and encodes it with a
``WanImageToVideoPipeline`` built from the same components (shared, not copied), exactly as that pipeline would.
"""

from __future__ import annotations

import dataclasses

import torch

from .family import VideoFamily
from .video_io import image_to_tensor, tensor_to_pil

__all__ = ["WanFamily"]


class WanFamily(VideoFamily):
    name = "wan"
    pipeline_classes = ("WanPipeline", "WanImageToVideoPipeline")
    # Self- and cross-attention projections of every block (diffusers' Wan attention names).
    attention_targets = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                         "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")
    ffn_targets = ("ffn.net.0.proj", "ffn.net.2")

    def __init__(self, pipe):
        super().__init__(pipe)
        if getattr(pipe, "transformer", None) is None:
            raise ValueError("the Wan pipeline has no `transformer`; a reasoner needs one")
        if getattr(pipe, "transformer_2", None) is not None:
            # Wan2.2 A14B switches experts at boundary_ratio; one LoRA per expert is not implemented yet.
            raise NotImplementedError(
                "two-expert Wan2.2 pipelines (transformer_2 set) are not supported yet; use a single-transformer "
                "Wan pipeline (Wan2.1 T2V/I2V, Wan2.2 TI2V-5B)"
            )
        self.expand_timesteps = bool(getattr(pipe.config, "expand_timesteps", False))
        if type(pipe).__name__ == "WanImageToVideoPipeline":
            self.is_i2v = True
        else:  # WanPipeline: text-to-video, or either for the TI2V form (per-token timesteps)
            self.is_i2v = None if self.expand_timesteps else False
        self._image_pipe = pipe if self.is_i2v else None
        vae = pipe.vae
        self.temporal = int(vae.config.scale_factor_temporal)
        self.spatial = int(vae.config.scale_factor_spatial)
        self.patch = tuple(self.transformer.config.patch_size)
        z = vae.config.z_dim
        self._mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, z, 1, 1, 1)
        self._std = torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, z, 1, 1, 1)

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.vae.config.z_dim)

    @property
    def variant(self) -> str:
        if self.is_i2v is False:
            return "t2v"
        return "ti2v" if self.expand_timesteps else "i2v"

    def image_pipeline(self):
        """The pipeline whose ``prepare_latents`` encodes a first frame: the pipeline itself when it is an
        image-to-video one, else (TI2V loaded as ``WanPipeline``) a ``WanImageToVideoPipeline(expand_timesteps=True)``
        over the same component objects, built once."""
        if self._image_pipe is None:
            from diffusers import WanImageToVideoPipeline

            p = self.pipe
            self._image_pipe = WanImageToVideoPipeline(tokenizer=p.tokenizer, text_encoder=p.text_encoder, vae=p.vae,
                                                       scheduler=p.scheduler, transformer=p.transformer,
                                                       expand_timesteps=True)
        return self._image_pipe

    def size_multiple(self):
        return self.spatial * self.patch[1], self.spatial * self.patch[2]

    def prepare(self, prompt, image, negative_prompt, num_frames, height, width, seed, guidance_scale,
                max_sequence_length):
        pipe = self.pipe
        pos, neg = self._checked_prompt_embeds(prompt, image, negative_prompt, num_frames, height, width,
                                               guidance_scale, max_sequence_length)
        with_image = image is not None
        device = self.device
        with torch.no_grad():
            lat_f = (num_frames - 1) // self.temporal + 1
            channels = pipe.vae.config.z_dim if with_image else self.transformer.config.in_channels
            shape = (1, channels, lat_f, height // self.spatial, width // self.spatial)
            noise = self.seeded_noise(shape, seed, device)
            conditions = {}
            if with_image:
                img = image_to_tensor(image, height, width).to(device)
                out = self.image_pipeline().prepare_latents(img, 1, channels, height, width, num_frames,
                                                            torch.float32, device, None, noise.clone())
                if self.expand_timesteps:
                    conditions["image_latents"] = out[1]  # (1, C, 1, h, w)
                    conditions["first_frame_mask"] = out[2]  # (1, 1, F_lat, h, w): 0 on frame 0, 1 elsewhere
                else:
                    conditions["concat"] = out[1]  # (1, 4 + C, F_lat, h, w): mask then image latents
                if self.transformer.config.image_dim is not None:
                    if getattr(pipe, "image_encoder", None) is None:
                        raise ValueError("the transformer expects CLIP image embeddings but the pipeline has no "
                                         "`image_encoder`")
                    emb = pipe.encode_image(tensor_to_pil(img.cpu()), device)
                    conditions["image_embeds"] = emb.to(self.dtype)
        return self._prepared(noise, pos, neg, num_frames, height, width, seed, guidance_scale, conditions)

    def reseed(self, prepared, seed):
        # The image conditions are the VAE's deterministic encoding of the first frame, independent of the noise.
        noise = self.seeded_noise(tuple(prepared.noise.shape), seed, prepared.noise.device)
        return dataclasses.replace(prepared, noise=noise, seed=seed)

    def model_input(self, prepared, latents, t):
        b = latents.shape[0]
        c = prepared.conditions
        extra = {}
        if "image_embeds" in c:
            extra["encoder_hidden_states_image"] = c["image_embeds"]
        if "first_frame_mask" in c:  # TI2V with an image
            mask = c["first_frame_mask"]
            hidden = (1 - mask) * c["image_latents"] + mask * latents
            # One timestep per token (patch): 0 on the clean first frame, t elsewhere; (B, F_lat * h/p * w/p).
            ts = (mask[0][0][:, :: self.patch[1], :: self.patch[2]] * t).flatten()
            return hidden, ts.unsqueeze(0).expand(b, -1), extra
        if "concat" in c:  # Wan2.1 image-to-video
            return torch.cat([latents, c["concat"].to(latents.dtype)], dim=1), t.expand(b), extra
        if self.expand_timesteps:
            # Wan2.2 5B text-to-video: per-token timesteps, all equal to t.
            n = latents.shape[2] * (latents.shape[3] // self.patch[1]) * (latents.shape[4] // self.patch[2])
            return latents, t.expand(b, n), extra
        return latents, t.expand(b), extra

    def finalize(self, prepared, latents):
        if "first_frame_mask" in prepared.conditions:
            mask = prepared.conditions["first_frame_mask"]
            return (1 - mask) * prepared.conditions["image_latents"] + mask * latents
        return latents

    def to_vae_space(self, latents: torch.Tensor) -> torch.Tensor:
        """Undo the pipeline's latent normalisation: z_vae = z * std + mean (per channel)."""
        return latents * self._std.to(latents.device) + self._mean.to(latents.device)

    def decode(self, latents):
        vae = self.pipe.vae
        z = self.to_vae_space(latents.to(torch.float32)).to(vae.dtype)
        video = vae.decode(z, return_dict=False)[0]  # (B, 3, F, H, W) in [-1, 1]
        return (video.to(torch.float32) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)

    def pixel_frame_index(self, num_latent_frames):
        # Latent frame 0 is pixel frame 0; latent frame j >= 1 covers pixel frames 4j-3 .. 4j: take the last.
        return [j * self.temporal for j in range(num_latent_frames)]
