"""The VAE/GAN baseline of Table 1, after Larsen et al. 2016 ("Autoencoding beyond pixels using a learned
similarity metric") and the authors' code (github.com/andersbll/autoencoding_beyond_pixels, model/aegan.py).

Three parameter groups, three objectives (Larsen et al., Algorithm 1):
- encoder:       kl_weight * L_prior + L_llike^Dis_l   (kl_weight = 1 in Larsen et al.)
- decoder:       gamma * L_llike^Dis_l - (1 - gamma) * L_GAN   (the authors' weighting of the two terms)
- discriminator: L_GAN, on real images, reconstructions and decoded prior samples.
L_llike^Dis_l is a unit-variance Gaussian log-likelihood (sum of squared errors) of the discriminator's
features at conv layer `dis_layer`. It is computed with the discriminator's parameters detached, so it never
trains the discriminator; the GAN terms decode detached latents, so they never reach the encoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from baselines.vae import EncoderDecoderModel, check_conv_stack
from models.blocks import ConvDecoder, ConvEncoder, conv_block, kl_diagonal_gaussians, reparameterize
from models.interface import StepResult, mark_io_layers


class Discriminator(nn.Module):
    """Larsen et al.'s discriminator: a 5x5 stride-1 conv, then one stride-2 block per further width (so the
    last feature map is resolution / 2 ** (len(widths) - 1) wide), a hidden fully connected layer and a logit.

    `forward` returns the logit (B,) and the features of conv layer `dis_layer` before its batch norm, the
    layer the authors' code reads (recon_depth=9: the output of the fourth convolution).
    """

    def __init__(self, *, resolution: int, widths: list[int], hidden: int, dis_layer: int):
        super().__init__()
        if not 0 <= dis_layer < len(widths):
            raise ValueError(f"vaegan: dis_layer {dis_layer} must index one of the {len(widths)} "
                             "discriminator convs (0-based); lower dis_layer or add widths")
        self.dis_layer = dis_layer
        first = nn.Sequential(nn.Conv2d(3, widths[0], kernel_size=5, padding=2), nn.LeakyReLU(0.2))
        strided = (conv_block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.convs = nn.ModuleList([first, *strided])
        feature_size = resolution // 2 ** (len(widths) - 1)
        self.classify = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * feature_size * feature_size, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )
        mark_io_layers(first[0], self.classify[1], self.classify[-1])

    def forward(self, images: torch.Tensor, features_only: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
        """features_only: stop at conv `dis_layer` (the logit is None); what Dis_l needs, without the layers
        above it (their output is unused there)."""
        x = images  # (B, 3, H, W)
        features = x
        for index, block in enumerate(self.convs):
            x = block[0](x)  # the convolution
            if index == self.dis_layer:
                features = x  # (B, C_l, H_l, W_l)
                if features_only:
                    return None, features
            x = block[1:](x)  # its normalisation and activation
        return self.classify(x).squeeze(1), features  # (B,), (B, C_l, H_l, W_l)


class ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the gradient flowing back through it by `scale`."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def feature_likelihood(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-L_llike^Dis_l: unit-variance Gaussian NLL, the sum of squared feature errors per image."""
    return (features.float() - target.float()).pow(2).flatten(1).sum(dim=1).mean()


def real_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """-log D(x), mean over the batch."""
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def fake_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """-log(1 - D(G(z))), mean over the batch."""
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


class VAEGAN(EncoderDecoderModel):
    kind = "vaegan"
    # Encoder and decoder gradients from one backward pass (training_step); False: one pass per objective, the
    # same gradients (tests and benchmarks/vaegan_backward.py compare).
    shared_backward = True
    # True: every step updates every group, whatever the balancing rule says; training.flops sets it to count a full
    # step, so that a trained model's FLOPs per image do not depend on where its weights sit against the rule.
    every_objective = False

    def __init__(
        self, *, resolution: int, latent_dim: int, widths: list[int], dis_hidden: int, dis_layer: int,
        gamma: float, balance: Mapping[str, Any], kl_weight: float = 1.0,
        discriminate_reconstructions: bool = True, real_weight: float = 0.5, pixel_weight: float = 0.0,
    ):
        super().__init__()
        check_conv_stack(resolution, widths, self.kind)
        if not 0.0 < real_weight < 1.0:
            raise ValueError(f"vaegan: real_weight must lie in (0, 1) (generated images get 1 - it), got {real_weight}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"vaegan: gamma must lie in [0, 1] (Dis_l's weight vs the GAN), got {gamma}")
        self.config = {
            "resolution": resolution, "latent_dim": latent_dim, "widths": list(widths),
            "dis_hidden": dis_hidden, "dis_layer": dis_layer, "gamma": gamma, "balance": dict(balance),
            "kl_weight": kl_weight, "discriminate_reconstructions": discriminate_reconstructions,
            "real_weight": real_weight, "pixel_weight": pixel_weight,
        }
        self.pixel_weight = pixel_weight
        self.kl_weight = kl_weight
        self.discriminate_reconstructions = discriminate_reconstructions
        self.real_weight = real_weight
        self.latent_dim = latent_dim
        self.gamma = gamma
        self.balance = dict(balance)
        self.encoder = ConvEncoder(in_channels=3, size=resolution, widths=list(widths), latent_dim=latent_dim)
        self.decoder = nn.Sequential(
            ConvDecoder(latent_dim=latent_dim, size=resolution, widths=list(widths)[::-1], out_channels=3),
            nn.Sigmoid(),  # images in [0, 1] like the real ones (the original used tanh on [-1, 1])
        )
        self.discriminator = Discriminator(resolution=resolution, widths=list(widths), hidden=dis_hidden,
                                           dis_layer=dis_layer)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VAEGAN:
        return cls(
            resolution=int(config["resolution"]), latent_dim=int(config["latent_dim"]),
            widths=[int(width) for width in config["widths"]], dis_hidden=int(config["dis_hidden"]),
            dis_layer=int(config["dis_layer"]), gamma=float(config["gamma"]), balance=dict(config["balance"]),
            # A checkpoint without these keys trained with KL weight 1, reconstructions discriminated, real and
            # generated images weighted equally.
            kl_weight=float(config.get("kl_weight", 1.0)),
            discriminate_reconstructions=bool(config.get("discriminate_reconstructions", True)),
            real_weight=float(config.get("real_weight", 0.5)),
            pixel_weight=float(config.get("pixel_weight", 0.0)),
        )

    @classmethod
    def from_params(cls, params: Mapping[str, Any], resolution: int) -> VAEGAN:
        settings = params["vaegan"][str(resolution)]
        return cls.from_config({"resolution": resolution, **{key: settings[key] for key in (
            "latent_dim", "widths", "dis_hidden", "dis_layer", "gamma", "balance", "kl_weight",
            "discriminate_reconstructions", "real_weight", "pixel_weight")}})

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "encoder": list(self.encoder.parameters()),
            "decoder": list(self.decoder.parameters()),
            "discriminator": list(self.discriminator.parameters()),
        }

    def _frozen_discriminator(self, images: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The discriminator with detached parameters: gradients reach its input, never its weights."""
        detached = {name: parameter.detach() for name, parameter in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, detached, (images,), {"features_only": True})

    def _updates(self, real_cost: float, fake_cost: float) -> tuple[bool, bool]:
        """The authors' balancing rule: (update decoder?, update discriminator?) from the BCE costs."""
        if self.every_objective or not self.balance["enabled"]:
            return True, True
        low = self.balance["equilibrium"] - self.balance["margin"]
        high = self.balance["equilibrium"] + self.balance["margin"]
        update_discriminator = not (real_cost < low or fake_cost < low)  # skip it when it is far ahead
        update_decoder = not (real_cost > high or fake_cost > high)  # skip the decoder when it is far behind
        if not (update_decoder or update_discriminator):
            return True, True
        return update_decoder, update_discriminator

    def training_step(self, images: torch.Tensor) -> StepResult:
        batch = images.shape[0]
        mean, log_var = self.encoder(images)  # (B, latent_dim) each
        latents = reparameterize(mean, log_var)
        kl = kl_diagonal_gaussians(mean.float(), log_var.float()).mean()  # L_prior
        # One backward pass for encoder and decoder (their two passes shared the decoder's and the frozen
        # discriminator's backward: the longest part of a step): the objective
        #   shared = gamma * Dis_l - (1 - gamma) * generated + kl_weight * KL
        # gives the decoder exactly its gradient, and the encoder gamma * dDis_l/dz through the decoder, which
        # the 1 / gamma below rescales into the encoder's own kl_weight * KL + Dis_l. gamma 0: two objectives.
        shared_pass = self.shared_backward and self.gamma > 0
        decoder_input = ScaleGradient.apply(latents, 1.0 / self.gamma) if shared_pass else latents

        # L_llike^Dis_l for encoder and decoder: real and reconstructed features in one batch, as the authors.
        reconstructions = self.decoder(decoder_input)  # (B, 3, H, W)
        _, features = self._frozen_discriminator(torch.cat([images, reconstructions]))
        real_features, reconstructed_features = features.split(batch)
        dis_l = feature_likelihood(reconstructed_features, real_features.detach())
        if self.pixel_weight > 0:  # a CPU-budget adaptation (not Larsen et al.'s): the common pixel SSE as well
            dis_l = dis_l + self.pixel_weight * (reconstructions.float() - images).pow(2).flatten(1).sum(dim=1).mean()

        # GAN terms: decoded from detached latents (no GAN gradient reaches the encoder); real and generated
        # images share the discriminator's batch, as in the authors' code. Their CelebA run discriminated prior
        # samples only (discriminate_ae_recon=False); Larsen et al.'s Algorithm 1 also reconstructions.
        prior_samples = self.decoder(torch.randn_like(latents))  # (B, 3, H, W)
        generated = [prior_samples]
        if self.discriminate_reconstructions:
            generated.insert(0, self.decoder(latents.detach()))  # (B, 3, H, W)
        logits, _ = self.discriminator(torch.cat([images, *generated]))  # ((1 + G) B,)
        real_logits, generated_logits = logits[:batch], logits[batch:]
        real_bce = real_cross_entropy(real_logits)
        fake_bce = fake_cross_entropy(generated_logits)  # mean over all generated images, the authors' "fake cost"
        # L_GAN as a loss, real and generated images weighted real_weight / 1 - real_weight (the authors'
        # real_vs_gen_weight): -[w log D(x) + (1 - w) mean log(1 - D(Dec(z)))]
        generated_bce = (1.0 - self.real_weight) * fake_bce
        gan = self.real_weight * real_bce + generated_bce

        update_decoder, update_discriminator = self._updates(real_bce.detach().item(), fake_bce.detach().item())
        # The decoder's -L_GAN also flows into the discriminator's weights; the training loop applies each
        # objective's gradient to its own group only (models/interface.py), so it updates the decoder alone.
        decoder_loss = self.gamma * dis_l - (1.0 - self.gamma) * generated_bce
        if shared_pass:  # one tensor for both groups: the loop takes its gradient once (training/loop.py)
            encoder_loss = decoder_loss = decoder_loss + self.kl_scale * self.kl_weight * kl  # not the decoder's
        else:
            encoder_loss = self.kl_scale * self.kl_weight * kl + dis_l
        return StepResult(
            objectives={
                "encoder": encoder_loss,
                "decoder": decoder_loss if update_decoder else None,
                "discriminator": gan if update_discriminator else None,
            },
            logs={
                "kl": kl.detach(), "dis_l": dis_l.detach(), "gan": gan.detach(),
                "real_bce": real_bce.detach(), "fake_bce": fake_bce.detach(),
                "update_decoder": torch.tensor(float(update_decoder)),
                "update_discriminator": torch.tensor(float(update_discriminator)),
            },
        )

