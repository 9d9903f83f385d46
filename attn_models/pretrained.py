"""A classifier fine-tuned from a pretrained Hugging Face encoder (BERT and its family: a folder in
``save_pretrained`` layout, or a hub id): the backbone's own class token and encoder, a new linear head.

It is an ``AttentionClassifier`` (attn_models/attention.py) like the models trained from scratch, so the pipeline
reads it alike: its input is the content tokens only (the backbone's token ids, padded with its pad id), it prepends
the backbone's class token itself, and ``forward(..., return_attention=True)`` gives the backbone's per-layer
attention weights (B, H, 1 + T, 1 + T) with the class token first and a one-hot readout of the class token. So every
map has one value per content token, and rollout, gradient-weighted attention, the deletion curves and serving work
unchanged.

Three choices the rest rests on:

- the backbone runs with ``attn_implementation="eager"``: the fused kernels return no attention weights, and the
  eager softmax's weights carry gradients (gradient-weighted attention needs them);
- the model is built from the backbone's config alone (``AutoModel.from_config``) and the pretrained weights are
  copied in by ``from_backbone``: a checkpoint stores the config and the whole state dict, so it rebuilds without the
  source folder;
- transformers 5 has neither ``head_mask`` nor ``prune_heads`` for BERT, so ``BertStyleHeads`` gives each layer the
  interface compression uses (``num_heads``, ``head_mask``, ``prune_heads``): a head is scaled by a forward pre-hook on
  the output projection (which reads the heads' outputs side by side) and pruned by cutting the rows of query, key and
  value and the columns of that projection, as ``MultiHeadAttention.prune_heads`` does.

The pooler (a pretrained dense layer over the class token, for next-sentence prediction) is dropped: the new head
reads the class token's output directly, as ClassTokenClassifier's does.

``PretrainedImageClassifier`` is the same for a Vision Transformer (ViT, and DeiT checkpoints in ViT layout): its
input is the pixels (B, C, H, W), already resized and normalised as the backbone's image processor does, and its
embeddings add the class token themselves, so there are no token ids; each map has one value per patch. Its attention
layers have the layout transformers 5 gives most models (one module with ``q_proj``, ``k_proj``, ``v_proj`` and
``o_proj``: ``ProjectionHeads``) and its layers run without an ``encoder`` module around them.
"""

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from attn_models.attention import AttentionClassifier, head_features, kept_columns, kept_rows

LOAD_OPTIONS = {"attn_implementation": "eager"}  # every backbone, built or loaded: attention weights with gradients
PREPENDED = ("cls_token", "distillation_token")  # tokens a ViT-style embedding may put before the patches
HEAD_LABELS = ("id2label", "label2id")  # the pretrained head's labels: not this model's, and not plain JSON keys


def backbone_config(config) -> dict:
    """A transformers config as the plain dict a checkpoint stores (model_args), without the old head's labels."""
    return {key: value for key, value in config.to_dict().items() if key not in HEAD_LABELS}


class BertStyleHeads:
    """One self-attention block of a BERT-style backbone (``self``/``attention`` with query, key and value, and
    ``output.dense`` reading the heads' outputs) seen as compression sees an attention layer: ``num_heads``,
    ``head_mask`` (H,) scaling each head's output (None: off), ``prune_heads(keep)``."""

    def __init__(self, block: nn.Module):
        self.block = block
        self.heads = getattr(block, "self", None) or block.attention  # BERT names it `self`, ViT `attention`
        self._mask, self._hook = None, None

    @staticmethod
    def matches(module: nn.Module) -> bool:
        heads = getattr(module, "self", None) or getattr(module, "attention", None)
        projection = getattr(getattr(module, "output", None), "dense", None)
        return isinstance(projection, nn.Linear) and all(
            isinstance(getattr(heads, name, None), nn.Linear) for name in ("query", "key", "value")
        )

    @property
    def num_heads(self) -> int:
        return self.heads.num_attention_heads

    @property
    def head_mask(self) -> torch.Tensor | None:
        return self._mask

    @head_mask.setter
    def head_mask(self, mask: torch.Tensor | None) -> None:
        if self._hook is not None:
            self._hook.remove()
        self._mask, self._hook = mask, None
        if mask is not None:
            self._hook = self.output.register_forward_pre_hook(self._scale)

    def _scale(self, _module, args):
        x = args[0]  # (B, T, H * D): the heads' outputs side by side
        scaled = x.view(*x.shape[:-1], self.num_heads, -1) * self._mask.view(-1, 1)
        return (scaled.view_as(x), *args[1:])

    PROJECTIONS = ("query", "key", "value")

    @property
    def output(self) -> nn.Linear:
        """The projection that reads the heads' outputs side by side."""
        return self.block.output.dense

    @output.setter
    def output(self, layer: nn.Linear) -> None:
        self.block.output.dense = layer

    @property
    def head_size(self) -> int:
        return self.heads.attention_head_size

    def prune_heads(self, keep: list[int]) -> None:
        rows = head_features(keep, self.num_heads, self.head_size)
        for name in self.PROJECTIONS:
            setattr(self.heads, name, kept_rows(getattr(self.heads, name), rows))
        self.output = kept_columns(self.output, rows)
        self.heads.num_attention_heads = len(keep)
        if hasattr(self.heads, "all_head_size"):
            self.heads.all_head_size = len(rows)
        self.head_mask = None


class ProjectionHeads(BertStyleHeads):
    """The attention layout transformers 5 gives ViT, DeiT, AST and most newer models: one module holding
    ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj`` (which reads the heads' outputs side by side), its head count
    in ``num_attention_heads`` and its head size in ``head_dim``; its forward pass infers the head count from the
    projections' width, so cutting them prunes heads."""

    PROJECTIONS = ("q_proj", "k_proj", "v_proj")

    def __init__(self, block: nn.Module):
        self.block = self.heads = block
        self._mask, self._hook = None, None

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return all(isinstance(getattr(module, name, None), nn.Linear) for name in (*cls.PROJECTIONS, "o_proj")) and (
            isinstance(getattr(module, "num_attention_heads", None), int)
        )

    @property
    def output(self) -> nn.Linear:
        return self.block.o_proj

    @output.setter
    def output(self, layer: nn.Linear) -> None:
        self.block.o_proj = layer

    @property
    def head_size(self) -> int:
        return self.block.head_dim


HEAD_LAYOUTS = (BertStyleHeads, ProjectionHeads)  # the attention layouts head_layers recognises, in this order


def layout_of(module: nn.Module):
    """The HEAD_LAYOUTS class that reads module's heads, or None."""
    return next((layout for layout in HEAD_LAYOUTS if layout.matches(module)), None)


class PretrainedClassifier(AttentionClassifier):
    """A pretrained encoder's class token output, classified by a new linear head."""

    def __init__(self, backbone_config: dict, num_classes: int, class_token_id: int, pad_id: int, dropout: float = 0.1,
                 max_len: int | None = None):  # fmt: skip
        """max_len: the most content tokens an input holds (a text kind cuts there); with the class token, at most the
        backbone's positions."""
        super().__init__()
        config = AutoConfig.for_model(**backbone_config)
        if max_len is not None and max_len + 1 > config.max_position_embeddings:
            raise ValueError(f"max_len {max_len} + the class token exceeds the backbone's "
                             f"{config.max_position_embeddings} positions")  # fmt: skip
        self.max_len = max_len
        self.class_token_id, self.pad_id = class_token_id, pad_id
        self._build(config, num_classes, dropout)

    def _build(self, config, num_classes: int, dropout: float) -> None:
        """The backbone from config (random weights: from_backbone copies the pretrained ones), without its pooler,
        and the new head over its class token."""
        self.backbone = AutoModel.from_config(config, **LOAD_OPTIONS)
        if getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None  # unused: the head reads the class token's output
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(config.hidden_size, num_classes)
        if not self.head_layers():
            raise ValueError(f"{config.model_type}: no attention layer of a known layout (query, key, value and "
                             "output.dense; or q_proj, k_proj, v_proj and o_proj)")  # fmt: skip

    @classmethod
    def from_backbone(cls, backbone: nn.Module, **head) -> "PretrainedClassifier":
        """A classifier whose encoder starts from backbone's weights (a model from ``AutoModel.from_pretrained``);
        head: the other arguments of the class (num_classes, ...)."""
        model = cls(backbone_config(backbone.config), **head)
        weights = {name: value for name, value in backbone.state_dict().items() if not name.startswith("pooler.")}
        model.backbone.load_state_dict(weights)
        return model

    def forward(self, token_ids: torch.Tensor, return_attention: bool = False):  # token_ids: (B, T) int64
        B = token_ids.shape[0]
        ids = torch.cat([token_ids.new_full((B, 1), self.class_token_id), token_ids], dim=1)  # (B, 1 + T)
        mask = (ids != self.pad_id).long()
        mask[:, 0] = 1  # the class token is never padding, whatever its id
        out = self.backbone(input_ids=ids, attention_mask=mask, output_attentions=return_attention)
        return self._classified(out, return_attention)

    def _classified(self, out, return_attention: bool):
        """The logits of the backbone's output (its class token's, first); with return_attention also its per-layer
        attentions and the one-hot readout of the class token."""
        logits = self.head(self.drop(out.last_hidden_state[:, 0]))
        if not return_attention:
            return logits
        readout = torch.zeros(out.last_hidden_state.shape[:2], dtype=logits.dtype, device=logits.device)
        readout[:, 0] = 1.0  # the class token's output alone feeds the head
        return logits, list(out.attentions), readout

    def __getstate__(self):
        """Pickled (mlflow.pytorch logs the model so; quantization deep-copies it) without the output-capturing
        hooks transformers installs on the first forward pass: they are local functions, which pickle cannot
        save. transformers installs them again on the next forward pass, as the flag reset here tells it to."""
        for module in self.backbone.modules():
            for handle, hook in list(module._forward_hooks.items()):
                if "output_capturing_hook" in getattr(hook, "__qualname__", ""):
                    del module._forward_hooks[handle]
        self.backbone._output_capturing_hooks_installed = False
        return super().__getstate__()

    @property
    def encoder_entry(self) -> nn.Module:
        return self.backbone.encoder

    def blank_tokens(self) -> torch.Tensor:
        """The embeddings of the class token followed by padding: positions (and token types) with no word."""
        length = self.backbone.config.max_position_embeddings
        ids = torch.full((1, length), self.pad_id, dtype=torch.long, device=self.head.weight.device)
        ids[0, 0] = self.class_token_id
        return self.backbone.embeddings(input_ids=ids)

    def head_layers(self) -> dict[str, BertStyleHeads]:
        return {f"backbone.{name}": layout_of(module)(module) for name, module in self.backbone.named_modules()
                if layout_of(module) is not None}  # fmt: skip

    def encoder_layers(self) -> nn.ModuleList:
        """The backbone's layers, from the input up (BERT keeps them in encoder.layer, ViT in layers)."""
        depth = self.backbone.config.num_hidden_layers
        return next(module for module in self.backbone.modules()
                    if isinstance(module, nn.ModuleList) and len(module) == depth)  # fmt: skip

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters from the input up, for freezing and layer-wise learning rates: the embeddings, each
        encoder layer in order, then the rest (the head, a final norm)."""
        layers = self.encoder_layers()
        groups = [list(self.backbone.embeddings.parameters()), *(list(layer.parameters()) for layer in layers)]
        grouped = {id(parameter) for group in groups for parameter in group}
        return [*groups, [parameter for parameter in self.parameters() if id(parameter) not in grouped]]


class PretrainedImageClassifier(PretrainedClassifier):
    """A pretrained Vision Transformer's class token output, classified by a new linear head. Its input is the pixels
    (B, C, H, W) at the backbone's image size, normalised as its image processor does (the kind does it); the
    embeddings cut them into patches and add the class token and the positions, so each map has one value per
    patch, in the patch grid's row-major order."""

    def __init__(self, backbone_config: dict, num_classes: int, dropout: float = 0.1):
        AttentionClassifier.__init__(self)
        config = AutoConfig.for_model(**backbone_config)
        self._build(config, num_classes, dropout)
        embeddings = self.backbone.embeddings
        prepended = [name for name in PREPENDED if getattr(embeddings, name, None) is not None]
        if prepended != ["cls_token"]:
            raise ValueError(f"{config.model_type}: not a ViT-style backbone (its embeddings must prepend one class "
                             "token and nothing else; a distilled DeiT adds a distillation token)")  # fmt: skip

    def forward(self, images: torch.Tensor, return_attention: bool = False):  # images: (B, C, H, W)
        out = self.backbone(pixel_values=images, output_attentions=return_attention)
        return self._classified(out, return_attention)

    @property
    def encoder_entry(self) -> nn.Module:
        """The first layer: ViT runs its layers with no encoder module around them, and the first one's input is the
        embeddings' output (B, 1 + patches, C), class token first."""
        return self.encoder_layers()[0]

    def blank_tokens(self) -> torch.Tensor:
        """The class token and the positions, with no patch content: what the embeddings make of an image whose
        patches say nothing (the kind gives a black image as the baseline instead)."""
        embeddings = self.backbone.embeddings
        positions = embeddings.position_embeddings  # (1, 1 + patches, C)
        content = torch.cat([embeddings.cls_token, torch.zeros_like(positions[:, 1:])], dim=1)
        return content + positions
