"""LapCVAE (Dorta et al., CVMP 2017, section 4): a Laplacian pyramid of conditional VAEs.

Level k = 0..K (finest first, like `models.pyramid.laplacian_pyramid`) is one VAE:
- encoder q_k(z_k | h_k, u(x_{k+1})): the level's high-frequency image and the upsampled reconstruction of the
  coarser levels, concatenated along channels (Eq. 9); the coarsest level sees b_K alone;
- decoder p_k(h_k | z_k, z_{k+1}, ..., z_K): this level's latent and every coarser one, concatenated (Eq. 11);
  `conditioning` chooses the decoder's condition at k < K: "latents" (Eq. 11, the default), "image" (Eq. 10: z_k
  and a learned embedding of u(x_{k+1}) of the same size as z_{k+1..K}) or "both" (z_k..z_K and the embedding);
- prior (Eq. 13): N(0, I) at level K; at k < K, N(R_k(mu_{k+1}), S_k(sigma_{k+1})) where M_k = (R_k, S_k) are
  shallow MLPs fed with q_{k+1}'s re-encoding of the image levels k+1..K generate (Figures 2 and 3). The
  "without M" variant (`use_m=False`) uses N(0, I) everywhere.
Images are float in [0, 1]; high-frequency levels h_k (k < K) are signed, roughly in [-1, 1].

`JointTrainable` trains every level at once (Eq. 12 summed over the levels, end to end), the alternative to
greedy training (`LevelTrainable`) that the ablations compare (studies/ablations.py).

A model may hold only its `trained_levels` coarsest levels (greedy training, coarsest first): the checkpoint
written after training level k holds levels k..K; `level0.pt` is the whole model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.blocks import ConvDecoder, ConvEncoder, conv_block, kl_diagonal_gaussians, reparameterize
from models.interface import StepResult, mark_io_layers
from models.pyramid import downsample, laplacian_pyramid, upsample

logger = logging.getLogger(__name__)

Gaussian = tuple[torch.Tensor, torch.Tensor]  # (mean, log-variance), each (B, latent_dim)
# (level k, u(x_{k+1}) or None at k = K, prior of z_k or None for N(0, I)) -> z_k (B, n_z[k])
LatentChooser = Callable[[int, "torch.Tensor | None", "Gaussian | None"], torch.Tensor]
# What level k's decoder is conditioned on besides z_k (section 4.1): coarser latents (Eq. 11), u(x_{k+1}) (Eq. 10).
CONDITIONING = ("latents", "image", "both")


@dataclass
class PyramidState:
    """What the coarse-to-fine pass has made so far, finest first: latents [z_k..z_K], composed [x_k..x_K],
    and q_j's re-encodings {j: (mean, log-variance)} of the high-frequency images it generated."""

    latents: list[torch.Tensor] = field(default_factory=list)
    composed: list[torch.Tensor] = field(default_factory=list)
    reencoded: dict[int, Gaussian] = field(default_factory=dict)


def level_depth(size: int, feature_size: int, max_blocks: int) -> int:
    """Stride-2 blocks of a level of `size` px: halve down to `feature_size` px, at most `max_blocks` times; a
    level no larger than `feature_size` keeps one block."""
    if size % feature_size and feature_size % size:
        raise ValueError(f"a {size} px pyramid level cannot be halved down to feature_size={feature_size} px; "
                         "set lapcvae.<res>.feature_size to a power of two")
    return max(1, min(max_blocks, int(math.log2(max(1, size // feature_size)))))


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """A shallow MLP (section 4.3): one hidden layer."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


class PriorNet(nn.Module):
    """M_k = (R_k, S_k) of Eq. 13: the coarser level's posterior -> this level's prior."""

    def __init__(self, coarser_dim: int, hidden: int, latent_dim: int):
        super().__init__()
        self.mean = mlp(coarser_dim, hidden, latent_dim)  # R_k
        # S_k maps log sigma^2 to log sigma^2, so its output is a valid variance without a constraint.
        self.log_var = mlp(coarser_dim, hidden, latent_dim)
        mark_io_layers(self)  # a shallow MLP from one latent to another: no hidden matrix for Muon

    def forward(self, coarser: Gaussian) -> Gaussian:
        coarser_mean, coarser_log_var = coarser  # (B, n_z[k+1]) each
        return self.mean(coarser_mean), self.log_var(coarser_log_var)  # (B, n_z[k]) each


def coarse_pyramid(images: torch.Tensor, levels: int, first: int) -> list[torch.Tensor | None]:
    """laplacian_pyramid(images, levels) with only the entries first..K computed (None below `first`).

    Same operations as models.pyramid, so the same values; it skips the upsampling of the fine levels, which
    dominates a coarse level's training step on CPUs.
    """
    blurred = [images]  # g_0..g_K (Eq. 6)
    for _ in range(levels - 1):
        blurred.append(downsample(blurred[-1]))
    pyramid: list[torch.Tensor | None] = [None] * first
    for k in range(first, levels - 1):
        pyramid.append(blurred[k] - upsample(blurred[k + 1], blurred[k].shape[-2:]))  # h_k
    pyramid.append(blurred[-1])  # b_K
    return pyramid


class ImageEmbedding(nn.Module):
    """Eq. 10's decoder condition: u(x_{k+1}) (B, 3, s, s) -> (B, dim) features, a conv stack like the encoder's."""

    def __init__(self, *, size: int, widths: list[int], dim: int):
        super().__init__()
        channels = [3, *widths]
        self.features = nn.Sequential(*(conv_block(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True)))
        feature_size = size // 2 ** len(widths)
        self.to_vector = nn.Linear(widths[-1] * feature_size * feature_size, dim)
        mark_io_layers(self.features[0][0], self.to_vector)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.to_vector(self.features(image).flatten(1))  # (B, dim)


class LevelVAE(nn.Module):
    """Encoder q_k, decoder p_k (with the embedding of u(x_{k+1}) it may be conditioned on) and, where the level
    has a learned prior, M_k."""

    def __init__(self, *, size: int, coarsest: bool, latent_dims: list[int], widths: list[int],
                 feature_size: int, m_hidden: int | None, conditioning: str = "latents"):
        super().__init__()
        depth = level_depth(size, feature_size, len(widths))
        # Smaller levels keep the deepest (widest) blocks: coarse levels carry the face's layout.
        level_widths = widths[-depth:]
        # The coarsest encoder has no batch norm: batch statistics make an image's 8 px code depend on its batch
        # companions in training and not at evaluation (evidence: docs/tuning.md, "LapCVAE").
        self.encoder = ConvEncoder(in_channels=3 if coarsest else 6, size=size, widths=level_widths,
                                   latent_dim=latent_dims[0], batch_norm=not coarsest)
        # Eq. 10 conditions on u(x_{k+1}): embedded to as many features as the coarser latents of Eq. 11, so that
        # "image" gives the decoder an input of the same size as "latents".
        coarser_dim = sum(latent_dims[1:])
        self.image_embedding = None if coarsest or conditioning == "latents" else \
            ImageEmbedding(size=size, widths=level_widths, dim=coarser_dim)
        decoder_dim = latent_dims[0] + (0 if coarsest else
                                        {"latents": 1, "image": 1, "both": 2}[conditioning] * coarser_dim)
        # A band h_k (k < K) has mean about 0: its decoder starts by predicting no detail, so that early steps train
        # what the latent adds rather than shrink a random output (docs/tuning.md, "LapCVAE").
        self.decoder = ConvDecoder(latent_dim=decoder_dim, size=size, widths=level_widths[::-1], out_channels=3,
                                   output_bias=None if coarsest else 0.0)
        self.prior_net = None if m_hidden is None else PriorNet(latent_dims[1], m_hidden, latent_dims[0])

    def prior(self, coarser: Gaussian) -> Gaussian:
        """Eq. 13: (R_k(mu_{k+1}), S_k(sigma_{k+1})) as a mean and a log-variance."""
        if self.prior_net is None:
            raise ValueError("this level has no M network (coarsest level or the without-M variant)")
        return self.prior_net(coarser)


class LapCVAE(nn.Module):
    kind = "lapcvae"

    def __init__(self, *, resolution: int, levels: int, latent_dims: list[int], kl_weights: list[float],
                 widths: list[int], feature_size: int, m_hidden: int, use_m: bool,
                 trained_levels: int | None = None, conditioning: str = "latents"):
        super().__init__()
        if conditioning not in CONDITIONING:
            raise ValueError(f"conditioning={conditioning!r} is not one of {CONDITIONING}; set "
                             "lapcvae.<res>.conditioning")
        trained_levels = levels if trained_levels is None else trained_levels
        if not 1 <= trained_levels <= levels:
            raise ValueError(f"trained_levels={trained_levels} must lie in 1..levels={levels}")
        if len(latent_dims) != levels or len(kl_weights) != levels:
            raise ValueError(f"latent_dims and kl_weights need one entry per level ({levels}), finest first")
        if resolution % 2 ** (levels - 1):
            raise ValueError(f"{resolution} px cannot be halved {levels - 1} times evenly; use fewer levels")
        self.config: dict[str, Any] = {
            "resolution": resolution, "levels": levels, "latent_dims": list(latent_dims),
            "kl_weights": list(kl_weights), "widths": list(widths), "feature_size": feature_size,
            "m_hidden": m_hidden, "use_m": use_m, "trained_levels": trained_levels, "conditioning": conditioning,
        }
        self.conditioning = conditioning
        self.levels = levels
        self.coarsest = levels - 1  # K
        self.first_level = levels - trained_levels  # finest level this model holds
        self.use_m = use_m
        self.kl_weights = list(kl_weights)
        self.sizes = [resolution // 2**k for k in range(levels)]
        self.level_vaes = nn.ModuleDict({
            str(k): LevelVAE(
                size=self.sizes[k], coarsest=k == self.coarsest, latent_dims=latent_dims[k:], widths=widths,
                feature_size=feature_size, m_hidden=m_hidden if use_m and k < self.coarsest else None,
                conditioning=conditioning,
            )
            for k in range(self.first_level, levels)
        })

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LapCVAE:
        return cls(**config)

    @classmethod
    def from_params(cls, level_params: dict[str, Any], resolution: int, use_m: bool,
                    trained_levels: int | None = None) -> LapCVAE:
        """Build from a `params["lapcvae"][str(resolution)]` section."""
        keys = ("levels", "latent_dims", "kl_weights", "widths", "feature_size", "m_hidden")
        return cls(resolution=resolution, use_m=use_m, trained_levels=trained_levels,
                   conditioning=level_params.get("conditioning", "latents"),
                   **{key: level_params[key] for key in keys})

    @property
    def variant(self) -> str:
        return "lapcvae" if self.use_m else "lapcvae_nom"

    def level(self, k: int) -> LevelVAE:
        if str(k) not in self.level_vaes:
            raise ValueError(f"level {k} is not in this model (it holds levels {self.first_level}..{self.coarsest})")
        return self.level_vaes[str(k)]

    # ----- single levels -------------------------------------------------------------------------------------
    def encode_level(self, k: int, h_k: torch.Tensor, upsampled_coarse: torch.Tensor | None) -> Gaussian:
        """q_k (Eq. 9): posterior (mean, log-variance), each (B, n_z[k]); upsampled_coarse is None at k = K."""
        inputs = h_k if k == self.coarsest else torch.cat([h_k, upsampled_coarse], dim=1)  # (B, 3 or 6, s, s)
        return self.level(k).encoder(inputs)

    def decode_level(self, k: int, latents_k_to_K: list[torch.Tensor],
                     upsampled_coarse: torch.Tensor | None = None) -> torch.Tensor:
        """p_k: [z_k, ..., z_K] (finest first) and u(x_{k+1}) (None at k = K) -> h_k (B, 3, s_k, s_k).

        Conditioned on z_{k+1..K} (Eq. 11, "latents"), on u(x_{k+1}) (Eq. 10, "image") or on both.
        """
        level = self.level(k)
        inputs = latents_k_to_K[:1] if self.conditioning == "image" else list(latents_k_to_K)
        if level.image_embedding is not None:
            if upsampled_coarse is None:
                raise ValueError(f"level {k}'s decoder is conditioned on u(x_{{k+1}}) ({self.conditioning!r}): "
                                 "pass upsampled_coarse")
            inputs.append(level.image_embedding(upsampled_coarse))  # (B, sum n_z[k+1..K])
        return level.decoder(torch.cat(inputs, dim=1))

    def _upsample_to(self, image: torch.Tensor, k: int) -> torch.Tensor:
        """u(.) from the next coarser level's size to level k's size."""
        return upsample(image, (self.sizes[k], self.sizes[k]))

    def to_full_size(self, image: torch.Tensor) -> torch.Tensor:
        """Upsample a level's composed image to the model's resolution, one pyramid step at a time."""
        while image.shape[-1] < self.sizes[0]:
            image = upsample(image)
        return image

    # ----- the coarse-to-fine pass shared by reconstruction, sampling and training ---------------------------
    def coarse_to_fine(
        self, stop_level: int, choose_latent: LatentChooser, reencode_levels: Iterable[int] = (),
        state: PyramidState | None = None,
    ) -> PyramidState:
        """Generate levels down to `stop_level` (continuing `state` if given, else starting at level K).

        choose_latent(k, u(x_{k+1}) or None, prior or None) gives z_k (B, n_z[k]); the prior is M_k applied to
        q_{k+1}'s re-encoding of what levels k+1..K generated when level k+1 is in `reencode_levels` and the
        model has M (Sec. 4.3: training and sampling see the same prior), else None, meaning N(0, I).
        """
        state = state or PyramidState()
        reencode_levels = set(reencode_levels)
        first = self.coarsest if not state.composed else self.coarsest - len(state.composed)
        for k in range(first, stop_level - 1, -1):
            upsampled = None if k == self.coarsest else self._upsample_to(state.composed[0], k)  # (B, 3, s_k, s_k)
            prior = None
            if self.use_m and k + 1 in state.reencoded:
                prior = self.level(k).prior(state.reencoded[k + 1])  # Eq. 13
            state.latents.insert(0, choose_latent(k, upsampled, prior))
            high = self.decode_level(k, state.latents, upsampled)  # (B, 3, s_k, s_k)
            state.composed.insert(0, high if upsampled is None else high + upsampled)  # Eq. 7
            if k in reencode_levels:
                state.reencoded[k] = self.encode_level(k, high, upsampled)
        return state

    def _posterior_means(self, pyramid: list[torch.Tensor]) -> LatentChooser:
        def choose(k: int, upsampled: torch.Tensor | None, prior: Gaussian | None) -> torch.Tensor:
            return self.encode_level(k, pyramid[k], upsampled)[0]
        return choose

    def _prior_samples(self, generator: torch.Generator, batch: int) -> LatentChooser:
        device = next(self.parameters()).device

        def choose(k: int, upsampled: torch.Tensor | None, prior: Gaussian | None) -> torch.Tensor:
            # Drawn on the CPU generator so a seed gives the same images on every device.
            eps = torch.randn(batch, self.config["latent_dims"][k], generator=generator).to(device)
            if prior is None:
                return eps  # N(0, I) (Eq. 5)
            mean, log_var = prior
            return mean + torch.exp(0.5 * log_var) * eps
        return choose

    # ----- the GenerativeModel API ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> posterior-mean latents [z_first..z_K] (finest first), each (B, n_z[k])."""
        pyramid = laplacian_pyramid(x, self.levels)
        return self.coarse_to_fine(self.first_level, self._posterior_means(pyramid)).latents

    def decode(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """[z_first..z_K] (finest first) -> (B, 3, H, W) in [0, 1], clamped (upsampled if levels are missing)."""
        def given(k: int, upsampled: torch.Tensor | None, prior: Gaussian | None) -> torch.Tensor:
            return latents[k - self.first_level]
        composed = self.coarse_to_fine(self.first_level, given).composed
        return self.to_full_size(composed[0]).clamp(0.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> reconstruction from posterior means, coarse to fine, clamped."""
        pyramid = laplacian_pyramid(x, self.levels)
        composed = self.coarse_to_fine(self.first_level, self._posterior_means(pyramid)).composed
        return self.to_full_size(composed[0]).clamp(0.0, 1.0)

    def _posterior_pass(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, PyramidState]:
        """Coarse to fine through q: z_k the posterior mean (generator None) or one draw from q_k (eps from
        `generator`, on the CPU), with the levels' summed KL(q_k || p_k) in nats (N,) against the prior each level
        trained with (M_k of q_{k+1}'s re-encoding of the generated level k+1, or N(0, I))."""
        pyramid = laplacian_pyramid(x, self.levels)
        total = torch.zeros(x.shape[0], device=x.device)

        def posterior(k: int, upsampled: torch.Tensor | None, prior: Gaussian | None) -> torch.Tensor:
            nonlocal total
            mean, log_var = self.encode_level(k, pyramid[k], upsampled)
            prior_args = () if prior is None else (prior[0].float(), prior[1].float())
            total = total + kl_diagonal_gaussians(mean.float(), log_var.float(), *prior_args)
            if generator is None:
                return mean
            return mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=generator).to(mean.device)

        state = self.coarse_to_fine(self.first_level, posterior,
                                    reencode_levels=range(self.first_level + 1, self.levels))
        return total, state

    @torch.no_grad()
    def rate(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) KL in nats per image, summed over the levels this model holds: sum_k KL(q_k || p_k).

        p_k is the prior each level trained against (Eq. 12): N(0, I) at level K and in the without-M variant,
        else M_k applied to q_{k+1}'s re-encoding of what levels k+1..K reconstruct from posterior means, the
        same prior `LevelTrainable` uses.
        """
        return self._posterior_pass(x, None)[0]

    @torch.no_grad()
    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The terms of the whole pyramid's -ELBO (eval/elbo.py) from one posterior draw per level, coarse to fine:
        z_k ~ q_k(z_k | h_k, u(x_{k+1})) (Eq. 9) with x_{k+1} composed from the drawn z_{k+1..K} (Eq. 7).

        Returns (sum over levels of KL(q_k || p_k) in nats (N,), the composed finest image (N, 3, H, W), not
        clamped): p_k is N(0, I) at level K and without M, else M_k of q_{k+1}'s re-encoding of the level it
        generated from the drawn latents (Eq. 13, as in sampling).
        """
        kl, state = self._posterior_pass(x, generator)
        return kl, self.to_full_size(state.composed[0]).float()

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> torch.Tensor:
        """Figure 2: z_K ~ N(0, I), decode, re-encode, M_k gives the next prior, ... -> (n, 3, H, W) in [0, 1]."""
        generator = torch.Generator().manual_seed(seed)
        state = self.coarse_to_fine(self.first_level, self._prior_samples(generator, n),
                                    reencode_levels=range(self.first_level + 1, self.levels))
        return self.to_full_size(state.composed[0]).clamp(0.0, 1.0)

    @torch.no_grad()
    def partial_levels(self, x: torch.Tensor, fixed_levels: int, n: int, seed: int) -> list[torch.Tensor]:
        """Figure 7 level by level: composed images [x_first..x_K] (finest first), each (n, 3, s_k, s_k).

        The `fixed_levels` coarsest levels use x's posterior means, computed once for the single image and
        repeated, so their composed images are identical in every sample; the finer levels sample their prior.
        """
        if x.dim() != 4 or x.shape[0] != 1:
            raise ValueError(f"partial_sample takes one image of shape (1, 3, H, W), got {tuple(x.shape)}")
        held = self.levels - self.first_level
        if not 1 <= fixed_levels <= held:
            raise ValueError(f"fixed_levels={fixed_levels} must lie in 1..{held} (the levels this model holds)")
        finest_fixed = self.levels - fixed_levels
        pyramid = laplacian_pyramid(x, self.levels)
        fixed = self.coarse_to_fine(finest_fixed, self._posterior_means(pyramid), reencode_levels=[finest_fixed])
        repeated = PyramidState(
            latents=[z.expand(n, -1) for z in fixed.latents],
            composed=[image.expand(n, -1, -1, -1) for image in fixed.composed],
            reencoded={k: (mean.expand(n, -1), log_var.expand(n, -1))
                       for k, (mean, log_var) in fixed.reencoded.items()},
        )
        generator = torch.Generator().manual_seed(seed)
        state = self.coarse_to_fine(self.first_level, self._prior_samples(generator, n),
                                    reencode_levels=range(self.first_level + 1, finest_fixed), state=repeated)
        return state.composed

    @torch.no_grad()
    def partial_sample(
        self, x: torch.Tensor, fixed_levels: int, n: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Figure 7: keep x's `fixed_levels` coarsest latents (posterior means), sample the finer ones.

        x: (1, 3, H, W) in [0, 1] -> samples (n, 3, H, W) and base (1, 3, H, W), the image the fixed levels alone
        produce, upsampled to full size. Both clamped to [0, 1].
        """
        composed = self.partial_levels(x, fixed_levels, n, seed)
        base = composed[self.levels - fixed_levels - self.first_level][:1]
        return self.to_full_size(composed[0]).clamp(0.0, 1.0), self.to_full_size(base).clamp(0.0, 1.0)


class LevelTrainable(nn.Module):
    """Trains level k of a LapCVAE (Eq. 12) with levels k+1..K frozen (eval mode, no grad; Figure 3)."""

    kl_scale = 1.0  # KL warm-up factor, set by the training loop each step (train.kl_warmup)

    def __init__(self, model: LapCVAE, level: int):
        super().__init__()
        if level != model.first_level:
            raise ValueError(f"level {level} must be the finest level the model holds ({model.first_level})")
        self.model = model
        self.level = level

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {f"level{self.level}": list(self.model.level(self.level).parameters())}

    def train(self, mode: bool = True) -> LevelTrainable:
        super().train(False)  # coarser levels stay frozen: batch norm keeps their running statistics
        self.model.level(self.level).train(mode)
        self.training = mode
        return self

    def training_step(self, images: torch.Tensor) -> StepResult:
        model, k = self.model, self.level
        pyramid = coarse_pyramid(images, model.levels, k)  # [None.., h_k..h_{K-1}, b_K], images in [0, 1]
        upsampled, coarse_latents, prior = None, [], None
        if k < model.coarsest:
            with torch.no_grad():  # levels k+1..K reconstruct the same image from posterior means (Figure 3)
                coarse = model.coarse_to_fine(k + 1, model._posterior_means(pyramid), reencode_levels=[k + 1])
            coarse_latents = coarse.latents
            upsampled = model._upsample_to(coarse.composed[0], k)  # u(x_{k+1}) (B, 3, s_k, s_k)
            if model.use_m:
                prior = model.level(k).prior(coarse.reencoded[k + 1])  # Eq. 13; M_k trains with level k
        loss, reconstruction, kl, _ = level_loss(model, k, pyramid[k], upsampled, coarse_latents, prior,
                                                 kl_scale=self.kl_scale)
        logs = {"loss": loss.detach(), "recon": reconstruction.detach(), "kl": kl.detach()}
        return StepResult(objectives={f"level{k}": loss}, logs=logs)


def level_loss(
    model: LapCVAE, k: int, h_k: torch.Tensor, upsampled: torch.Tensor | None, coarse_latents: list[torch.Tensor],
    prior: Gaussian | None, kl_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 12 of level k, negated, averaged over the batch: (loss, reconstruction term, KL, posterior mean).

    h_k (B, 3, s_k, s_k); upsampled: u(x_{k+1}) or None at k = K; coarse_latents: [z_{k+1}..z_K]; prior: M_k's
    (mean, log-variance) or None for N(0, I); kl_scale: the training loop's KL warm-up factor.
    """
    mean, log_var = model.encode_level(k, h_k, upsampled)  # (B, n_z[k]) each
    z = reparameterize(mean, log_var)
    decoded = model.decode_level(k, [z, *coarse_latents], upsampled)  # (B, 3, s_k, s_k)
    # Eq. 12, first term: -log N(h_k; p_k(z), I/2) is, up to a constant, the sum of squared errors over the
    # level's pixels, with images in [0, 1] (so h_k in about [-1, 1]); averaged over the batch.
    reconstruction = (decoded.float() - h_k).pow(2).sum(dim=(1, 2, 3)).mean()
    prior_args = () if prior is None else (prior[0].float(), prior[1].float())
    kl = kl_diagonal_gaussians(mean.float(), log_var.float(), *prior_args).mean()
    return reconstruction + kl_scale * model.kl_weights[k] * kl, reconstruction, kl, mean  # Eq. 12, negated


class JointTrainable(nn.Module):
    """Trains every level of a LapCVAE at once, end to end: the sum over k of level k's Eq. 12 (same lambda_k).

    The alternative to greedy training that section 5 compares against ("the total training time is doubled if
    the greedy training procedure is used"). Each level sees what it sees under greedy training -- u(x_{k+1})
    and z_{k+1..K} from the coarser levels' posterior means, and M_k of q_{k+1}'s re-encoding -- but nothing is
    frozen: level k's loss also trains the coarser levels through those inputs. One parameter group, one optimizer.
    """

    kl_scale = 1.0  # KL warm-up factor, set by the training loop each step (train.kl_warmup)

    def __init__(self, model: LapCVAE):
        super().__init__()
        if model.first_level != 0:
            raise ValueError("joint training needs a whole LapCVAE (trained_levels = levels)")
        self.model = model

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"levels": list(self.model.parameters())}

    def training_step(self, images: torch.Tensor) -> StepResult:
        model = self.model
        pyramid = laplacian_pyramid(images, model.levels)  # [h_0, ..., h_{K-1}, b_K]
        state = PyramidState()
        losses: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

        def posterior_means(k: int, upsampled: torch.Tensor | None, prior: Gaussian | None) -> torch.Tensor:
            # state.latents holds [z_{k+1}..z_K] (posterior means) while z_k is chosen.
            loss, reconstruction, kl, mean = level_loss(model, k, pyramid[k], upsampled, state.latents, prior,
                                                        kl_scale=self.kl_scale)
            losses[k] = (loss, reconstruction, kl)
            return mean

        reencode = range(1, model.levels) if model.use_m else ()
        model.coarse_to_fine(0, posterior_means, reencode_levels=reencode, state=state)
        total = torch.stack([losses[k][0] for k in range(model.levels)]).sum()  # Eq. 12 summed over the levels
        logs = {"loss": total.detach()}
        for k in range(model.levels):
            logs[f"recon_level{k}"] = losses[k][1].detach()
            logs[f"kl_level{k}"] = losses[k][2].detach()
        return StepResult(objectives={"levels": total}, logs=logs)


class PriorRetrainer(nn.Module):
    """Section 5.1.3 / Figure 8: retrain only the M networks of a converged LapCVAE, everything else frozen.

    M_k enters Eq. 12 only through lambda_k * KL(q_k || N(R_k, S_k)), so that is the objective, summed over k < K.
    """

    def __init__(self, model: LapCVAE):
        super().__init__()
        if not model.use_m or model.first_level != 0:
            raise ValueError("retrain-m needs a whole LapCVAE with M networks (level0.pt of variant lapcvae)")
        self.model = model

    def prior_nets(self) -> list[nn.Module]:
        return [self.model.level(k).prior_net for k in range(self.model.coarsest)]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"m": [p for net in self.prior_nets() for p in net.parameters()]}

    def train(self, mode: bool = True) -> PriorRetrainer:
        super().train(False)
        for net in self.prior_nets():
            net.train(mode)
        self.training = mode
        return self

    def training_step(self, images: torch.Tensor) -> StepResult:
        model = self.model
        pyramid = laplacian_pyramid(images, model.levels)
        posteriors: dict[int, Gaussian] = {}

        def posterior_means(k: int, upsampled: torch.Tensor | None, prior: Gaussian | None) -> torch.Tensor:
            posteriors[k] = model.encode_level(k, pyramid[k], upsampled)
            return posteriors[k][0]

        with torch.no_grad():  # encoders and decoders are frozen: q_k of the image and q_{k+1}'s re-encodings
            reencoded = model.coarse_to_fine(0, posterior_means, reencode_levels=range(1, model.levels)).reencoded
        logs: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=images.device)
        for k in range(model.coarsest):
            prior_mean, prior_log_var = model.level(k).prior(reencoded[k + 1])  # Eq. 13, with grad
            mean, log_var = posteriors[k]
            kl = kl_diagonal_gaussians(mean.float(), log_var.float(), prior_mean.float(), prior_log_var.float())
            loss = loss + model.kl_weights[k] * kl.mean()
            logs[f"kl_level{k}"] = kl.mean().detach()
        logs["loss"] = loss.detach()
        return StepResult(objectives={"m": loss}, logs=logs)
