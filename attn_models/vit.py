"""Vision Transformer (Dosovitskiy et al., 2021): image -> patches -> encoder with a class token.

Two ways to turn patches into tokens:
- ``stem="patch"``: one linear projection per patch (a conv with kernel = stride = patch size), as in ViT;
- ``stem="conv"``: a few 3x3 stride-2 convolutions down to the same patch grid (Xiao et al., 2021, "Early
  convolutions help transformers see better"): it trains far better on small datasets such as CIFAR-10 subsets.
Either way each token is one cell of the patch grid, so attention maps read the same.
"""

import math

import torch
from torch import nn

from attn_models.attention import ClassTokenClassifier


def conv_stem(in_channels: int, embed_dim: int, patch_size: int) -> nn.Sequential:
    """log2(patch_size) 3x3 stride-2 conv + BatchNorm + GELU layers (channels doubling up to embed_dim), then 1x1."""
    if patch_size < 2 or patch_size & (patch_size - 1):
        raise ValueError(f"the conv stem needs a power-of-two patch_size >= 2, got {patch_size}")
    layers, channels = [], in_channels
    steps = int(math.log2(patch_size))
    for step in range(steps):
        out = embed_dim // 2 ** (steps - 1 - step)
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.GELU()]
        channels = out
    return nn.Sequential(*layers, nn.Conv2d(channels, embed_dim, 1))


class VisionTransformer(ClassTokenClassifier):
    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 1,
        embed_dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        stem: str = "patch",
        pool: str = "cls",
    ):
        if image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) must be divisible by patch_size ({patch_size})")
        self.grid_size = image_size // patch_size
        super().__init__(self.grid_size**2, num_classes, embed_dim, depth, num_heads, mlp_ratio, dropout, pool)
        if stem == "conv":
            self.patch_embed = conv_stem(in_channels, embed_dim, patch_size)
        elif stem == "patch":
            self.patch_embed = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        else:
            raise ValueError(f"stem must be 'patch' or 'conv', got {stem!r}")

    def forward(self, images: torch.Tensor, return_attention: bool = False):  # images: (B, C, H, W)
        patches = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, grid*grid, C)
        return self.classify(patches, None, return_attention)
