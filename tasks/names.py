"""Names shared by the stages, the served model and the tests: each file and artifact name is defined here once."""

CHECKPOINT = "checkpoint.pt"  # outputs/<run id>/: the trained weights and what rebuilds the model
COMPACT_CHECKPOINT = "compact.pt"  # outputs/<run id>/: the compress stage's chosen variant (tasks/stages/compress.py)
TOKENIZER = "tokenizer.json"  # outputs/<run id>/: the subword vocabulary of token-based kinds
LABELS = "labels.json"  # beside the checkpoint: class names, logged with the pytorch model
RECIPE_FILE = "dataset.json"  # data/<task>/: the recipe the data was built from
UNLABELLED_TEXTS = "unlabelled.txt"  # data/<task>/: a text task's pretraining texts, one a line (pretrain.source)

MODEL_ARTIFACT = "model"  # the mlflow.pytorch model of a run
SERVING_ARTIFACT = "serving"  # the mlflow.pyfunc model a run registers and serves (raw inputs in)
MONITOR_REFERENCE = "monitoring/reference.json"  # a classifier run: its answers' features over the test split
COMPACT_ARTIFACT = "compact"  # the served model of the compress stage's chosen variant; also its registry alias
