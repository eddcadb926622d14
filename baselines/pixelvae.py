"""The PixelVAE baseline (Gulrajani et al. 2016), scaled to the suite's CPU budget.

A convolutional VAE whose decoder does not output the image but a feature map at full resolution, which
conditions a small PixelCNN (van den Oord et al. 2016) over the image's pixels:
    p(x | z) = prod_i p(x_i | x_<i, dec(z)),  i in raster order (row by row, left to right).
The PixelCNN is a stack of masked convolutions (mask A on the first layer: a pixel never sees itself; mask B
after it), with the decoder's features added, through a 1x1 projection, before every non-linearity.

Differences from the authors' model, chosen to fit a few hundred Adam steps on a 2-core CPU:
- one latent level (their 64 px model has two); the decoder is the suite's ConvDecoder;
- each pixel's three channels are predicted together (independent given x_<i and z), not R then G then B;
- p(x_i | x_<i, z) is a Gaussian with a fixed sigma, not a 256-way softmax, so the loss is on the suite's common
  scale (params.yaml, lapcvae): sum of squared errors over [0, 1] pixels + kl_weight * KL in nats,
  i.e. -log N(x; mu, sigma^2 I) with kl_weight = 2 sigma^2.
Like theirs, the PixelCNN is shallow (a small receptive field), which leaves global structure to the latent.

Reconstruction decodes the posterior mean greedily: each pixel is set to its predicted mean, then fed back
(the original pixels are never shown to the PixelCNN). Sampling draws z from the prior and each pixel from
N(mu_i, (sample_temperature * sigma)^2), clamped to [0, 1]; temperature 0 is greedy decoding.
Both are autoregressive. A pixel's output depends only on `context` rows above it (within `context` columns)
and the pixels left of it, so decoding runs as a wavefront: each step draws every pixel whose raster-order
predecessors are done, each from the PixelCNN run on its small crop of the image; this gives exactly the
raster-order, full-image result (tested) in W + (context + 1)(H - 1) steps instead of H W.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.vae import check_conv_stack, sample_prior
from core.progress import progress_bar
from models.blocks import ConvDecoder, ConvEncoder, kl_diagonal_gaussians, reparameterize
from models.interface import StepResult, mark_io_layers

logger = logging.getLogger(__name__)


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution that sees only pixels before the centre in raster order (mask "A") or also the centre
    (mask "B"), all channels of a pixel together."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        if mask_type not in ("A", "B") or kernel_size % 2 == 0:
            raise ValueError(f"masked conv: mask {mask_type!r} must be 'A' or 'B', kernel {kernel_size} odd")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        centre = kernel_size // 2
        mask = torch.ones(1, 1, kernel_size, kernel_size)
        mask[..., centre, centre + (mask_type == "B"):] = 0  # the centre row: only pixels to the left (and centre)
        mask[..., centre + 1:, :] = 0  # rows below the centre
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ConditionalPixelCNN(nn.Module):
    """(B, 3, H, W) image and (B, F, H, W) conditioning features -> (B, 3, H, W) mean of each pixel given the
    pixels before it and the features at its own position."""

    def __init__(self, *, hidden: int, layers: int, first_kernel: int, kernel: int, condition_channels: int):
        super().__init__()
        if layers < 1 or hidden < 1:
            raise ValueError(f"pixelvae: pixelcnn layers ({layers}) and hidden ({hidden}) must be positive")
        self.layers = nn.ModuleList([MaskedConv2d(3, hidden, first_kernel, "A")] + [
            MaskedConv2d(hidden, hidden, kernel, "B") for _ in range(layers - 1)])
        self.condition = nn.Conv2d(condition_channels, hidden * layers, kernel_size=1)  # one bias map per layer
        self.to_mean = nn.Conv2d(hidden, 3, kernel_size=1)
        mark_io_layers(self.layers[0], self.condition, self.to_mean)
        # How far the output at a pixel reaches: rows above and columns either side (the sum of kernel radii).
        self.context = first_kernel // 2 + (layers - 1) * (kernel // 2)

    def forward(self, images: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.from_projected(images, self.condition(condition))

    def from_projected(self, images: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        """As forward, with the 1x1 projection of the conditioning features already applied (B, hidden*L, H, W)."""
        biases = projected.chunk(len(self.layers), dim=1)
        hidden = F.relu(self.layers[0](images) + biases[0])  # (B, hidden, H, W)
        for layer, bias in zip(self.layers[1:], biases[1:], strict=True):
            hidden = hidden + F.relu(layer(hidden) + bias)  # residual: depth without losing the input
        return self.to_mean(hidden)  # (B, 3, H, W)

    def centre_mean(self, images: torch.Tensor, projected: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """(N, 3): the output of `from_projected` at the bottom-centre pixel of crops of context + 1 rows and
        2 context + 1 columns of the zero-padded image, each layer computed only where the next one reads it.
        inside: (N, 1, R + 1, 2R + 1), 1 on the image's pixels and 0 on the padding around it: activations there
        are zeroed after every layer, as a convolution's own zero padding of the full image would have them.

        Unpadded ("valid") convolutions over the crop, with zero rows added below (which the masks never read),
        shrink each layer's output by its kernel radius: rows above and columns either side. Same values as
        the full computation there (tested through `PixelVAE.generate`), about a seventh of the work.
        """
        biases = projected.chunk(len(self.layers), dim=1)  # (N, hidden, R + 1, 2R + 1) each
        hidden, top, side = images, 0, 0  # the crop of the full grid the current layer's outputs cover
        for index, layer in enumerate(self.layers):
            radius = layer.kernel_size[0] // 2
            below = F.pad(hidden, (0, 0, 0, radius))  # rows below the centre: never read through the mask
            out = F.conv2d(below, layer.weight * layer.mask, layer.bias)  # rows top + radius .., columns shrunk
            top, side = top + radius, side + radius
            rows, columns = slice(top, None), slice(side, inside.shape[-1] - side)
            out = F.relu(out + biases[index][:, :, rows, columns])
            # Layers after the first are residual: add their input over the same (shrunk) region.
            hidden = out if index == 0 else hidden[:, :, radius:, radius:hidden.shape[-1] - radius] + out
            hidden = hidden * inside[:, :, rows, columns]  # zero outside the image, as the full image's padding
        return self.to_mean(hidden)[:, :, -1, hidden.shape[-1] // 2]  # (N, 3)


class PixelVAE(nn.Module):
    """VAE (N(0, I) prior) with a PixelCNN decoder conditioned on dec(z); see the module docstring."""

    kind = "pixelvae"
    kl_scale = 1.0  # KL warm-up factor, set by the training loop each step (train.kl_warmup)

    def __init__(self, *, resolution: int, latent_dim: int, widths: list[int], condition_channels: int,
                 pixelcnn_hidden: int, pixelcnn_layers: int, first_kernel: int, kernel: int, kl_weight: float,
                 sample_temperature: float):
        super().__init__()
        check_conv_stack(resolution, widths, self.kind)
        if latent_dim < 1 or condition_channels < 1:
            raise ValueError(f"pixelvae: latent_dim ({latent_dim}) and condition_channels ({condition_channels}) "
                             "must be positive")
        if kl_weight <= 0:
            raise ValueError(f"pixelvae: kl_weight must be > 0 (it is 2 sigma^2), got {kl_weight}; set "
                             "pixelvae.<res>.kl_weight")
        if sample_temperature < 0:
            raise ValueError(f"pixelvae: sample_temperature must be >= 0, got {sample_temperature}")
        self.config = {"resolution": resolution, "latent_dim": latent_dim, "widths": list(widths),
                       "condition_channels": condition_channels, "pixelcnn_hidden": pixelcnn_hidden,
                       "pixelcnn_layers": pixelcnn_layers, "first_kernel": first_kernel, "kernel": kernel,
                       "kl_weight": kl_weight, "sample_temperature": sample_temperature}
        self.resolution = resolution
        self.latent_dim = latent_dim
        self.kl_weight = kl_weight
        self.sigma = (kl_weight / 2.0) ** 0.5  # kl_weight = 2 sigma^2 on [0, 1] pixels
        self.sample_temperature = sample_temperature
        self.encoder = ConvEncoder(in_channels=3, size=resolution, widths=list(widths), latent_dim=latent_dim)
        self.decoder = ConvDecoder(latent_dim=latent_dim, size=resolution, widths=list(widths)[::-1],
                                   out_channels=condition_channels)
        self.pixelcnn = ConditionalPixelCNN(hidden=pixelcnn_hidden, layers=pixelcnn_layers, first_kernel=first_kernel,
                                            kernel=kernel, condition_channels=condition_channels)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PixelVAE:
        return cls(resolution=int(config["resolution"]), latent_dim=int(config["latent_dim"]),
                   widths=[int(width) for width in config["widths"]],
                   condition_channels=int(config["condition_channels"]),
                   pixelcnn_hidden=int(config["pixelcnn_hidden"]), pixelcnn_layers=int(config["pixelcnn_layers"]),
                   first_kernel=int(config["first_kernel"]), kernel=int(config["kernel"]),
                   kl_weight=float(config["kl_weight"]), sample_temperature=float(config["sample_temperature"]))

    @classmethod
    def from_params(cls, params: Mapping[str, Any], resolution: int) -> PixelVAE:
        section = dict(params["pixelvae"][str(resolution)])
        pixelcnn = section.pop("pixelcnn")
        section.pop("train", None)
        return cls.from_config({**section, "resolution": resolution,
                                "pixelcnn_hidden": pixelcnn["hidden"], "pixelcnn_layers": pixelcnn["layers"],
                                "first_kernel": pixelcnn["first_kernel"], "kernel": pixelcnn["kernel"]})

    # ----- training ------------------------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"pixelvae": list(self.parameters())}

    def training_step(self, images: torch.Tensor) -> StepResult:
        mean, log_var = self.encoder(images)  # (B, latent_dim) each
        condition = self.decoder(reparameterize(mean, log_var))  # (B, F, H, W)
        predicted = self.pixelcnn(images, condition)  # (B, 3, H, W): teacher forcing, every pixel at once
        # Common scale: SSE over [0, 1] pixels = 2 sigma^2 * (-log N(x; mu, sigma^2)) + const.
        reconstruction = (predicted.float() - images).pow(2).flatten(1).sum(dim=1).mean()
        kl = kl_diagonal_gaussians(mean.float(), log_var.float()).mean()
        loss = reconstruction + self.kl_scale * self.kl_weight * kl
        return StepResult(objectives={"pixelvae": loss},
                          logs={"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()})

    # ----- evaluation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def rate(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) KL(q(z|x) || N(0, I)) in nats per image."""
        mean, log_var = self.encoder(images)
        return kl_diagonal_gaussians(mean.float(), log_var.float())

    @torch.no_grad()
    def elbo_terms(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One posterior draw z ~ q(z | x) per image: (KL to N(0, I) in nats (N,), each pixel's mean predicted by
        the PixelCNN from the true pixels before it and dec(z) (N, 3, H, W)), the terms of the exact -ELBO that
        eval/elbo.py scores (eps drawn on the CPU from `generator`)."""
        mean, log_var = self.encoder(images)
        eps = torch.randn(mean.shape, generator=generator).to(mean.device)  # on the CPU: the same draws everywhere
        condition = self.decoder(mean + torch.exp(0.5 * log_var) * eps)
        return kl_diagonal_gaussians(mean.float(), log_var.float()), self.pixelcnn(images, condition).float()

    @torch.no_grad()
    def generate(self, condition: torch.Tensor, noise_std: float, generator: torch.Generator | None = None,
                 wavefront: bool = True) -> torch.Tensor:
        """Draw x pixel by pixel given dec(z) = condition (B, F, H, W): x_i = clamp(mu_i + noise_std * eps_i).

        The output at (r, c) sees only rows r - context .. r - 1 within `context` columns of c, and row r left of
        c, so with wavefront=True every pixel with c + (context + 1) r = t is drawn at step t, all at once, each
        from its own (context + 1) x (2 context + 1) crop of the zero-padded image: W + (context + 1)(H - 1)
        steps instead of H W, with exactly the raster-order result (wavefront=False decodes in raster order on
        the full image, for tests). eps (B, 3, H, W) is drawn on the CPU from `generator` before decoding, so a
        seed gives the same images on every device and in either order.
        """
        batch, _, height, width = condition.shape
        device = condition.device
        noise = noise_std * torch.randn(batch, 3, height, width, generator=generator).to(device)
        if not wavefront:
            projected = self.pixelcnn.condition(condition)  # (B, hidden * L, H, W)
            images = torch.zeros(batch, 3, height, width, device=device)
            for row in range(height):
                for column in range(width):
                    mean = self.pixelcnn.from_projected(images, projected)[:, :, row, column]  # (B, 3)
                    images[:, :, row, column] = (mean.float() + noise[:, :, row, column]).clamp(0.0, 1.0)
            return images
        reach = self.pixelcnn.context
        rows_high, columns_wide = reach + 1, 2 * reach + 1

        def padded(tensor: torch.Tensor) -> torch.Tensor:
            """(B, C, H, W) -> (H + R, W + 2R, B, C), zero-padded above and either side: every crop is inside, and
            its rows of pixels are contiguous, so cropping copies a few large blocks."""
            return F.pad(tensor, (reach, reach, reach, 0)).permute(2, 3, 0, 1).contiguous()

        images = padded(torch.zeros(batch, 3, height, width, device=device))  # (H + R, W + 2R, B, 3)
        conditions = padded(condition.float())  # (H + R, W + 2R, B, F); projected per crop (a 1x1 conv)
        inside = padded(torch.ones(1, 1, height, width, device=device))  # (H + R, W + 2R, 1, 1)
        steps = width + (reach + 1) * (height - 1)
        for step in progress_bar(range(steps), desc="pixelvae decoding", unit="step", leave=False, disable=steps < 512):
            # Pixels drawn at this step: c = step - (reach + 1) r, within the image.
            first_row = max(0, -(-(step - width + 1) // (reach + 1)))
            rows = range(first_row, min(height - 1, step // (reach + 1)) + 1)
            columns = [step - (reach + 1) * row for row in rows]

            def crops(tensor: torch.Tensor) -> torch.Tensor:
                """Crop (row, column) covers image rows row - R .. row and columns column - R .. column + R."""
                stacked = torch.stack([tensor[row:row + rows_high, column:column + columns_wide]  # noqa: B023
                                       for row, column in zip(rows, columns, strict=True)])  # noqa: B023
                crop_count, _, _, crop_batch, channels = stacked.shape  # (k, R + 1, 2R + 1, B or 1, C)
                return stacked.permute(0, 3, 4, 1, 2).expand(crop_count, batch, channels, rows_high, columns_wide
                                                             ).reshape(-1, channels, rows_high, columns_wide)

            projected = self.pixelcnn.condition(crops(conditions))  # (k B, hidden * L, R + 1, 2R + 1)
            mean = self.pixelcnn.centre_mean(crops(images), projected, crops(inside))  # (k B, 3)
            mean = mean.float().view(len(rows), batch, 3)  # (k, B, 3)
            for index, (row, column) in enumerate(zip(rows, columns, strict=True)):
                images[row + reach, column + reach] = (mean[index] + noise[:, :, row, column]).clamp(0.0, 1.0)
        return images[reach:, reach:reach + width].permute(2, 3, 0, 1).contiguous()  # (B, 3, H, W)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        mean, _ = self.encoder(images)  # the posterior mean, decoded greedily
        return self.generate(self.decoder(mean), noise_std=0.0)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, seed: int) -> torch.Tensor:
        """(n, latent_dim) codes -> (n, 3, H, W) in [0, 1], the PixelCNN's pixel noise drawn from `seed + 1`."""
        generator = torch.Generator().manual_seed(seed + 1)  # the pixel noise, apart from the latents' stream
        return self.generate(self.decoder(latents), self.sample_temperature * self.sigma, generator)

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> torch.Tensor:
        device = next(self.parameters()).device
        return self.decode_latents(sample_prior(n, self.latent_dim, seed, device), seed)  # (n, latent_dim) codes
