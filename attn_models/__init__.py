"""Pure PyTorch attention models. Nothing here imports Prefect, MLflow or DVC."""
from attn_models.attention import MultiHeadAttention, attention_rollout
from attn_models.speech_transformer import SpeechTransformer
from attn_models.text_classifier import TextTransformer
from attn_models.translation_transformer import TranslationTransformer
from attn_models.vit import VisionTransformer

__all__ = ["MultiHeadAttention", "attention_rollout", "SpeechTransformer", "TextTransformer", "TranslationTransformer",
           "VisionTransformer"]
