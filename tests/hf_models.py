"""Tiny random Hugging Face backbones for the tests, built offline and saved in ``save_pretrained`` layout: what a
task's ``model.backbone.source`` names: ``save_tiny_bert`` for text, ``save_tiny_vit`` for images, and an Audio
Spectrogram Transformer and its feature extractor for speech (``save_tiny_ast``).

The weights are random: the tests check that the pipeline loads, fine-tunes, explains, compresses, serves and
reproduces such a model, not what it learns. HF_HUB_OFFLINE keeps transformers off the network: a test that reached
for the hub fails instead of downloading.
"""

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

# A word-level WordPiece vocabulary: the special tokens, the letters and a few pieces, so that any text tokenizes.
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LETTERS = list("abcdefghijklmnopqrstuvwxyzäöüßéèàçñ")
PIECES = [f"##{letter}" for letter in LETTERS] + ["the", "der", "le", "el", "de", "la", "und", "and", "et", "ja"]


def tiny_tokenizer(folder: Path):
    """A BertTokenizerFast over the vocabulary above (lower-cased, split at whitespace and punctuation)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = {token: index for index, token in enumerate(dict.fromkeys(SPECIAL + LETTERS + PIECES))}  # ids 0..n-1
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )  # fmt: skip
    return BertTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")  # fmt: skip


def save_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer, 4-head BERT (hidden size 32) and its tokenizer, saved to folder; returns folder."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = tiny_tokenizer(folder)
    torch.manual_seed(seed)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                        vocab_size=len(tokenizer), max_position_embeddings=128, pad_token_id=0)  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


VIT_SIZE = 16  # px: the tiny ViT's images, half the built-in digits' 32 (the kind resizes them to the processor's)
VIT_PATCH = 4  # px: a 4 x 4 grid of patches
VIT_MEAN, VIT_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as most pretrained ViTs normalise


def save_tiny_vit(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer, 4-head ViT (hidden size 32) over 3-channel 16 x 16 images in 4 x 4 patches, and its image
    processor (resize to 16 x 16, normalise with ImageNet's VIT_MEAN and VIT_STD, not the image kind's own 0.5),
    saved to folder; returns folder."""
    import torch
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                       image_size=VIT_SIZE, patch_size=VIT_PATCH, num_channels=3)  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": VIT_SIZE, "width": VIT_SIZE}, image_mean=list(VIT_MEAN),
                         image_std=list(VIT_STD)).save_pretrained(folder)  # fmt: skip
    return folder


# A tiny AST: 24 mel bins and 104 frames (a 1 s clip's 98, padded) cut into 12 x 12 patches without overlap, so a
# grid of 2 frequency rows by 8 time columns.
AST_MEL_BINS, AST_FRAMES, AST_PATCH = 24, 104, 12


def save_tiny_ast(folder: Path, sample_rate: int, seed: int = 0) -> Path:
    """A random 2-layer, 4-head Audio Spectrogram Transformer (hidden size 32) and its feature extractor at
    sample_rate, saved to folder; returns folder."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(seed)
    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                       num_mel_bins=AST_MEL_BINS, max_length=AST_FRAMES, patch_size=AST_PATCH,
                       frequency_stride=AST_PATCH, time_stride=AST_PATCH)  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    model = ASTModel(config)
    with torch.no_grad():  # transformers starts the class, distillation and position embeddings at 0: vary them
        model.embeddings.position_embeddings.normal_(std=0.02)
    model.save_pretrained(folder)
    ASTFeatureExtractor(sampling_rate=sample_rate, num_mel_bins=AST_MEL_BINS, max_length=AST_FRAMES,
                        mean=-6.0, std=3.0).save_pretrained(folder)  # fmt: skip
    return folder
