"""The registry of task kinds: every module in this package that defines ``SPEC`` (a ``Kind``, see base.py).

A task in params.yaml names its kind (``kind: text``). Adding a kind is adding one module here (plus its model in
attn_models/): the params schema, the stages, the command line and the served model find it through this registry.
"""

import importlib
import pkgutil
from pathlib import Path

from tasks.kinds.kind import Kind


def discover() -> dict[str, Kind]:
    """name -> spec of every module in this package that defines SPEC, in pipeline order."""
    specs = []
    for module_info in pkgutil.iter_modules(__path__):
        spec = getattr(importlib.import_module(f"{__name__}.{module_info.name}"), "SPEC", None)
        if spec is not None:
            specs.append(spec)
    return {spec.name: spec for spec in sorted(specs, key=lambda spec: (spec.order, spec.name))}


REGISTRY = discover()
KINDS = tuple(REGISTRY)


def get(name: str) -> Kind:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}; choose from {', '.join(KINDS)}") from None


def load_checkpoint(path) -> tuple:
    """The trained model of a checkpoint (on the CPU, in eval mode), built by its kind, and the checkpoint.

    Read with ``weights_only=True``: a checkpoint holds tensors and plain values only, so a crafted file cannot run
    code when it is loaded. A pruned model's checkpoint names the heads each attention layer kept (``kept_heads``)."""
    import torch  # here: a cached run never loads a checkpoint

    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    model = get(checkpoint["kind"]).build_model(checkpoint["model_args"])
    if checkpoint.get("kept_heads"):  # a pruned variant (the compress stage): its smaller layers first
        from attn_models.compression import prune_heads

        prune_heads(model, checkpoint["kept_heads"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint


def load_trained(checkpoint_path: Path, data_dir: Path, section, seed: int) -> tuple:
    """What the stages after training read: (model, checkpoint, tokenizer or None, the tokenizer's path, the prepared
    splits), the tokenizer being the one saved beside the checkpoint."""
    from tokenizers import Tokenizer

    from tasks.defaults import resolved_section
    from tasks.names import TOKENIZER

    model, checkpoint = load_checkpoint(checkpoint_path)
    tokenizer_path = Path(checkpoint_path).parent / TOKENIZER
    tokenizer = Tokenizer.from_file(str(tokenizer_path)) if tokenizer_path.exists() else None
    section = resolved_section(section, checkpoint.get("resolved", {}))  # the `auto` keys as training resolved them
    splits = get(checkpoint["kind"]).load_splits(data_dir, section, seed, tokenizer)
    return model, checkpoint, tokenizer, tokenizer_path, splits
