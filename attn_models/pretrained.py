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
embeddings add the class token themselves, so there are no token ids; each map has one value per patch.
``PretrainedAudioClassifier`` does the same for an Audio Spectrogram Transformer on raw clips: the backbone's feature
extractor runs inside the model, the maps have one value per spectrogram patch, and its class and distillation tokens
are both left out of them (``special_tokens``). Both backbones' attention layers have the layout transformers 5 gives
most models (one module with ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj``: ``ProjectionHeads``) and their layers
run without an ``encoder`` module around them (``PatchClassifier``, their common part).
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
        """The logits of the backbone's output: the head reads the mean of its special tokens' outputs (the class
        token's alone, or AST's class and distillation tokens', as ASTForAudioClassification does); with
        return_attention also its per-layer attentions and the readout, 1 / special_tokens on each of them."""
        special = self.special_tokens
        logits = self.head(self.drop(out.last_hidden_state[:, :special].mean(dim=1)))
        if not return_attention:
            return logits
        readout = torch.zeros(out.last_hidden_state.shape[:2], dtype=logits.dtype, device=logits.device)
        readout[:, :special] = 1 / special  # the special tokens' outputs alone feed the head
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


class PatchClassifier(PretrainedClassifier):
    """What a ViT-style backbone (ViT, AST) fine-tuned under a new head has in common: its embeddings cut the input
    into patches and prepend the special tokens themselves (``special_tokens`` of them: PREPENDED's that it has),
    and its layers run with no encoder module around them. A subclass builds it (``_build``) and gives ``forward``."""

    def _build(self, config, num_classes: int, dropout: float) -> None:
        super()._build(config, num_classes, dropout)
        prepended = [name for name in PREPENDED if getattr(self.backbone.embeddings, name, None) is not None]
        if len(prepended) != self.special_tokens:
            raise ValueError(f"{config.model_type}: its embeddings prepend {', '.join(prepended) or 'no token'}; "
                             f"{type(self).__name__} reads {self.special_tokens} token(s) before the patches (a "
                             "distilled DeiT adds a distillation token)")  # fmt: skip

    @property
    def encoder_entry(self) -> nn.Module:
        """The first layer: its input is the embeddings' output (B, special tokens + patches, C)."""
        return self.encoder_layers()[0]

    def blank_tokens(self) -> torch.Tensor:
        """The special tokens and the positions, with no patch content: what the embeddings make of an input whose
        patches say nothing (the kinds give a black image or a silent clip as the baseline instead)."""
        embeddings = self.backbone.embeddings
        positions = embeddings.position_embeddings  # (1, special tokens + patches, C)
        prepended = [getattr(embeddings, name) for name in PREPENDED[: self.special_tokens]]
        return torch.cat([*prepended, torch.zeros_like(positions[:, self.special_tokens :])], dim=1) + positions


class PretrainedImageClassifier(PatchClassifier):
    """A pretrained Vision Transformer's class token output, classified by a new linear head. Its input is the pixels
    (B, C, H, W) at the backbone's image size, normalised as its image processor does (the kind does it); the
    embeddings cut them into patches and add the class token and the positions, so each map has one value per
    patch, in the patch grid's row-major order. A distilled DeiT (a second prepended token) is refused."""

    def __init__(self, backbone_config: dict, num_classes: int, dropout: float = 0.1):
        AttentionClassifier.__init__(self)
        self._build(AutoConfig.for_model(**backbone_config), num_classes, dropout)

    def forward(self, images: torch.Tensor, return_attention: bool = False):  # images: (B, C, H, W)
        out = self.backbone(pixel_values=images, output_attentions=return_attention)
        return self._classified(out, return_attention)


# The Kaldi filterbank frames the AST feature extractor computes (torchaudio.compliance.kaldi.fbank's defaults).
FBANK_SHIFT_MS, FBANK_WINDOW_MS = 10.0, 25.0
EXTRACTOR_KEYS = ("sampling_rate", "num_mel_bins", "max_length", "do_normalize", "mean", "std")


def extractor_settings(extractor) -> dict:
    """An ASTFeatureExtractor's settings, as the plain dict a checkpoint stores: what the model decodes audio with."""
    return {key: getattr(extractor, key) for key in EXTRACTOR_KEYS}


def fbank_frames(num_samples: int, sample_rate: int) -> int:
    """The filterbank frames the feature extractor computes from a clip of num_samples (Kaldi frames only whole
    windows), before it pads or cuts them to its max_length."""
    shift, window = (int(sample_rate * ms / 1000) for ms in (FBANK_SHIFT_MS, FBANK_WINDOW_MS))
    return max(0, (num_samples - window) // shift + 1)


class PretrainedAudioClassifier(PatchClassifier):
    """A pretrained Audio Spectrogram Transformer (AST, Gong et al., 2021) fine-tuned on raw clips: the backbone's
    feature extractor (Kaldi log-mel filterbanks, padded or cut to its max_length frames, normalised by its mean and
    std) is part of the model, so a saved model, like the kind's own, takes raw samples at its sampling rate.

    AST's embeddings put a class token and a distillation token before the spectrogram patches (a grid of
    ``patch_grid`` = (frequency rows, time columns), row-major): ``special_tokens`` is 2 and every map has one value
    per patch. The head reads the mean of the two tokens' outputs, as ASTForAudioClassification does (both were
    pretrained to summarise the clip), and the readout says so: 1/2 on each."""

    special_tokens = 2

    def __init__(self, backbone_config: dict, feature_extractor: dict, num_classes: int, sample_rate: int,
                 clip_seconds: float, dropout: float = 0.1):  # fmt: skip
        """feature_extractor: ``extractor_settings`` of the backbone's; sample_rate and clip_seconds: the clips'."""
        AttentionClassifier.__init__(self)
        config = AutoConfig.for_model(**backbone_config)
        if feature_extractor["sampling_rate"] != sample_rate:
            raise ValueError(f"the backbone's feature extractor takes {feature_extractor['sampling_rate']} Hz audio, "
                             f"the clips are {sample_rate} Hz")  # fmt: skip
        for key in ("num_mel_bins", "max_length"):
            if feature_extractor[key] != getattr(config, key):
                raise ValueError(f"the feature extractor's {key} ({feature_extractor[key]}) is not the backbone's "
                                 f"({getattr(config, key)})")  # fmt: skip
        self.extractor, self.sample_rate, self.clip_seconds = dict(feature_extractor), sample_rate, clip_seconds
        self._build(config, num_classes, dropout)
        self.patch_grid = self.backbone.embeddings.get_shape(config)

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """What ASTFeatureExtractor computes from each clip of waveform (B, samples): (B, max_length, num_mel_bins)."""
        from torchaudio.compliance import kaldi

        settings, frames = self.extractor, self.extractor["max_length"]
        rows = []
        for clip in waveform:
            fbank = kaldi.fbank(clip[None], sample_frequency=settings["sampling_rate"], window_type="hanning",
                                num_mel_bins=settings["num_mel_bins"])  # fmt: skip
            rows.append(nn.functional.pad(fbank[:frames], (0, 0, 0, max(0, frames - len(fbank)))))
        features = torch.stack(rows)
        if settings["do_normalize"]:
            features = (features - settings["mean"]) / (settings["std"] * 2)
        return features

    def front_end(self, waveform: torch.Tensor) -> torch.Tensor:
        """The features as the speech kind draws a spectrogram: (B, num_mel_bins, frames), low bins first."""
        return self.features(waveform).transpose(1, 2)

    def forward(self, waveform: torch.Tensor, return_attention: bool = False):  # waveform: (B, samples) float
        out = self.backbone(input_values=self.features(waveform), output_attentions=return_attention)
        return self._classified(out, return_attention)

    def token_spans(self) -> torch.Tensor:
        """The samples each patch hears, (patches, 2) [start, end): its time column's filterbank frames."""
        config = self.backbone.config
        shift, window = (self.sample_rate * ms / 1000 for ms in (FBANK_SHIFT_MS, FBANK_WINDOW_MS))
        rows, columns = self.patch_grid
        first = torch.arange(columns, dtype=torch.float32).repeat(rows) * config.time_stride
        return torch.stack([first * shift, (first + config.patch_size - 1) * shift + window], dim=1)
