"""Build each modality's attention model from its params.yaml section."""
import importlib

MODEL_CLASSES = {"text": "TextTransformer", "image": "VisionTransformer", "speech": "SpeechTransformer"}  # in attn_models


def model_args(modality: str, section, num_classes: int, vocab_size: int | None = None) -> dict:
    """The constructor arguments of the modality's model; saved in checkpoints to rebuild it."""
    m = section.model
    args = dict(num_classes=num_classes, embed_dim=m.embed_dim, depth=m.depth, num_heads=m.num_heads,
                mlp_ratio=m.mlp_ratio, dropout=m.dropout)
    if modality == "text":
        args.update(vocab_size=vocab_size, max_len=m.max_len)
    elif modality == "image":
        args.update(image_size=section.data.image_size, patch_size=m.patch_size, in_channels=section.data.channels,
                    stem=m.stem)
    elif modality == "speech":
        args.update(sample_rate=section.data.sample_rate, clip_seconds=section.data.clip_seconds, n_mels=m.n_mels,
                    freq_mask=m.freq_mask, time_mask=m.time_mask)
    return args


def build_model(modality: str, args: dict):
    """The modality's torch module (attn_models, and so torch, load only here)."""
    return getattr(importlib.import_module("attn_models"), MODEL_CLASSES[modality])(**args)
