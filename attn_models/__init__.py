"""Pure PyTorch attention models, one file each: attention.py (the shared attention layer, encoder and rollout),
text_classifier.py, vit.py, speech_transformer.py, encoder_decoder.py (the decoder side any encoder can reuse),
translation_transformer.py. Nothing here imports Prefect,
MLflow or DVC.

This package imports none of its modules itself: importing one model loads that model's code only, so the stage cache
(tasks/caching.py, which follows imports) re-runs a modality's stages when its own model changes and no other's.
"""
