"""Build each modality's attention model from its params.yaml section, or from a checkpoint."""
import importlib

MODEL_CLASSES = {"text": "TextTransformer", "image": "VisionTransformer", "speech": "SpeechTransformer",
                 "translation": "TranslationTransformer"}  # in attn_models


def model_args(modality: str, section, num_classes: int, vocab_size: int | None = None) -> dict:
    """The constructor arguments of the modality's model; saved in checkpoints to rebuild it."""
    m = section.model
    args = dict(embed_dim=m.embed_dim, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio, dropout=m.dropout)
    if modality == "translation":  # special token ids: the model's defaults, which train_tokenizer's order gives
        return args | dict(vocab_size=vocab_size, encoder_depth=m.encoder_depth, decoder_depth=m.decoder_depth,
                           max_len=m.max_len)
    args.update(num_classes=num_classes, depth=m.depth)
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


def load_checkpoint(path) -> tuple:
    """The trained model of a checkpoint (on the CPU, in eval mode) and the checkpoint itself."""
    import torch  # here, like build_model: a cached run never loads a checkpoint

    checkpoint = torch.load(path, weights_only=False, map_location="cpu")
    model = build_model(checkpoint["modality"], checkpoint["model_args"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
