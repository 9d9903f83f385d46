"""Vision Transformer (Dosovitskiy et al., 2021): image -> patches -> encoder with a class token."""
import torch
from torch import nn

from attn_models.attention import ClassTokenClassifier


class VisionTransformer(ClassTokenClassifier):
    def __init__(self, num_classes: int, image_size: int = 32, patch_size: int = 4, in_channels: int = 1,
                 embed_dim: int = 64, depth: int = 4, num_heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.1):
        if image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) must be divisible by patch_size ({patch_size})")
        self.grid_size = image_size // patch_size
        super().__init__(self.grid_size**2, num_classes, embed_dim, depth, num_heads, mlp_ratio, dropout)
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor, return_attention: bool = False):  # images: (B, C, H, W)
        patches = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, grid*grid, C)
        return self.classify(patches, None, return_attention)
