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

``PretrainedAudioClassifier`` does the same for an Audio Spectrogram Transformer on raw clips: the backbone's feature
extractor runs inside the model, the maps have one value per spectrogram patch, and its class and distillation tokens
are both left out of them (``special_tokens``). transformers 5 gives AST one attention module with q/k/v/o_proj:
``ProjectionHeads`` is its compression interface.
"""

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from attn_models.attention import AttentionClassifier, head_features, kept_columns, kept_rows

LOAD_OPTIONS = {"attn_implementation": "eager"}  # every backbone, built or loaded: attention weights with gradients
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
            self._hook = self.projection.register_forward_pre_hook(self._scale)

    @property
    def projection(self) -> nn.Linear:
        """The output projection: it reads the heads' outputs side by side."""
        return self.block.output.dense

    def _scale(self, _module, args):
        x = args[0]  # (B, T, H * D): the heads' outputs side by side
        scaled = x.view(*x.shape[:-1], self.num_heads, -1) * self._mask.view(-1, 1)
        return (scaled.view_as(x), *args[1:])

    def prune_heads(self, keep: list[int]) -> None:
        rows = head_features(keep, self.num_heads, self.heads.attention_head_size)
        for name in ("query", "key", "value"):
            setattr(self.heads, name, kept_rows(getattr(self.heads, name), rows))
        self.block.output.dense = kept_columns(self.block.output.dense, rows)
        self.heads.num_attention_heads = len(keep)
        self.heads.all_head_size = len(rows)
        self.head_mask = None


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
        self.build_backbone(config, num_classes, dropout)

    def build_backbone(self, config, num_classes: int, dropout: float) -> None:
        """The backbone from its config (random weights: from_backbone copies the pretrained ones in) and the new
        head; a backbone whose attention layers compression cannot read: ValueError."""
        self.backbone = AutoModel.from_config(config, **LOAD_OPTIONS)
        if getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None  # unused: the head reads the class token's output
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(config.hidden_size, num_classes)
        if not self.head_layers():
            raise ValueError(f"{config.model_type}: not a BERT-style encoder (no layer has query, key, value and "
                             "output.dense, or q_proj, k_proj, v_proj and o_proj)")  # fmt: skip

    @classmethod
    def from_backbone(cls, backbone: nn.Module, num_classes: int, class_token_id: int, pad_id: int,
                      dropout: float = 0.1, max_len: int | None = None) -> "PretrainedClassifier":  # fmt: skip
        """A classifier whose encoder starts from backbone's weights (a model from ``AutoModel.from_pretrained``)."""
        model = cls(backbone_config(backbone.config), num_classes, class_token_id, pad_id, dropout, max_len)
        return model.load_backbone_weights(backbone)

    def load_backbone_weights(self, backbone: nn.Module) -> "PretrainedClassifier":
        """This model with backbone's pretrained weights (all but the dropped pooler's) in its encoder."""
        weights = {name: value for name, value in backbone.state_dict().items() if not name.startswith("pooler.")}
        self.backbone.load_state_dict(weights)
        return self

    def forward(self, token_ids: torch.Tensor, return_attention: bool = False):  # token_ids: (B, T) int64
        B = token_ids.shape[0]
        ids = torch.cat([token_ids.new_full((B, 1), self.class_token_id), token_ids], dim=1)  # (B, 1 + T)
        mask = (ids != self.pad_id).long()
        mask[:, 0] = 1  # the class token is never padding, whatever its id
        out = self.backbone(input_ids=ids, attention_mask=mask, output_attentions=return_attention)
        logits = self.head(self.drop(out.last_hidden_state[:, 0]))
        if not return_attention:
            return logits
        readout = torch.zeros(ids.shape, dtype=logits.dtype, device=ids.device)
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
        return {f"backbone.{name}": layout(module) for name, module in self.backbone.named_modules()
                for layout in (BertStyleHeads, ProjectionHeads) if layout.matches(module)}  # fmt: skip

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters from the input up, for freezing and layer-wise learning rates: the embeddings, each
        encoder layer in order, then the rest (the head, a final norm)."""
        depth = self.backbone.config.num_hidden_layers
        layers = next(module for module in self.backbone.modules()
                      if isinstance(module, nn.ModuleList) and len(module) == depth)  # fmt: skip
        groups = [list(self.backbone.embeddings.parameters()), *(list(layer.parameters()) for layer in layers)]
        grouped = {id(parameter) for group in groups for parameter in group}
        return [*groups, [parameter for parameter in self.parameters() if id(parameter) not in grouped]]


class ProjectionHeads(BertStyleHeads):
    """An attention module with ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj`` in one (the layout transformers 5
    gives AST and ViT-style encoders), seen as compression sees an attention layer, as BertStyleHeads does."""

    def __init__(self, block: nn.Module):
        self.block = self.heads = block
        self._mask, self._hook = None, None

    @staticmethod
    def matches(module: nn.Module) -> bool:
        return all(
            isinstance(getattr(module, name, None), nn.Linear) for name in ("q_proj", "k_proj", "v_proj", "o_proj")
        )

    @property
    def projection(self) -> nn.Linear:
        return self.block.o_proj

    def prune_heads(self, keep: list[int]) -> None:
        rows = head_features(keep, self.num_heads, self.block.head_dim)
        for name in ("q_proj", "k_proj", "v_proj"):
            setattr(self.block, name, kept_rows(getattr(self.block, name), rows))
        self.block.o_proj = kept_columns(self.block.o_proj, rows)
        self.block.num_attention_heads = len(keep)
        self.head_mask = None


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


class PretrainedAudioClassifier(PretrainedClassifier):
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
        self.build_backbone(config, num_classes, dropout)
        self.patch_grid = self.backbone.embeddings.get_shape(config)

    @classmethod
    def from_backbone(cls, backbone: nn.Module, feature_extractor: dict, num_classes: int, sample_rate: int,
                      clip_seconds: float, dropout: float = 0.1) -> "PretrainedAudioClassifier":  # fmt: skip
        model = cls(
            backbone_config(backbone.config), feature_extractor, num_classes, sample_rate, clip_seconds, dropout
        )
        return model.load_backbone_weights(backbone)

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
        logits = self.head(self.drop(out.pooler_output))  # the mean of the class and distillation tokens' outputs
        if not return_attention:
            return logits
        attentions = list(out.attentions)
        readout = torch.zeros(attentions[0].shape[0], attentions[0].shape[-1], dtype=logits.dtype,
                              device=logits.device)  # fmt: skip
        readout[:, : self.special_tokens] = 1 / self.special_tokens
        return logits, attentions, readout

    @property
    def encoder_entry(self) -> nn.Module:
        return self.backbone.layers[0]  # AST runs its layers in a loop: the first one's input is the encoder's

    def blank_tokens(self) -> torch.Tensor:
        """The class and distillation tokens, then the patches' positions with no patch: (1, 2 + patches, C)."""
        embeddings = self.backbone.embeddings
        tokens = torch.cat([embeddings.cls_token, embeddings.distillation_token,
                            torch.zeros_like(embeddings.position_embeddings[:, 2:])], dim=1)  # fmt: skip
        return tokens + embeddings.position_embeddings

    def token_spans(self) -> torch.Tensor:
        """The samples each patch hears, (patches, 2) [start, end): its time column's filterbank frames."""
        config = self.backbone.config
        shift, window = (self.sample_rate * ms / 1000 for ms in (FBANK_SHIFT_MS, FBANK_WINDOW_MS))
        rows, columns = self.patch_grid
        first = torch.arange(columns, dtype=torch.float32).repeat(rows) * config.time_stride
        return torch.stack([first * shift, (first + config.patch_size - 1) * shift + window], dim=1)
