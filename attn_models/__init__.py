"""Pure PyTorch attention models, one file each, built on two shared ones: attention.py (the attention layer, the
encoder, rollout) and encoder_decoder.py (the decoder side, with greedy and beam-search decoding, that any encoder can
reuse). Nothing here imports Prefect, MLflow or DVC.

This package imports none of its modules itself: importing one model loads that model's code only, so the stage cache
(tasks/caching.py, which follows imports) re-runs a kind's stages when its own model changes and no other's.
"""
