"""Fine-tuning a pretrained backbone: which parameters train, and at which learning rate (the optimizer's groups).

The usual recipe (Howard & Ruder, 2018; Clark et al., 2020 for layer-wise decay): the lower layers hold general
features that a small dataset should barely move, so they may stay frozen (``freeze_layers``) or learn more slowly
than the top (``layer_decay``); the new head starts from random weights and learns at the task's own rate.
"""


def layer_groups(groups: list[list], backbone, head_lr: float) -> list[dict]:
    """Optimizer groups from the model's layer_groups (the embeddings, each layer, then the head and the rest): the
    embeddings and the first backbone.freeze_layers layers frozen (requires_grad off), layer l of L at
    backbone.lr * layer_decay ** (L - l) (the embeddings are layer 0), the rest at head_lr."""
    *backbone_groups, head = groups
    top = len(backbone_groups) - 1
    frozen = min(backbone.freeze_layers + 1, len(backbone_groups)) if backbone.freeze_layers else 0
    optimized = []
    for depth, parameters in enumerate(backbone_groups):
        if depth < frozen:
            for parameter in parameters:
                parameter.requires_grad_(False)
            continue
        decay = backbone.layer_decay ** (top - depth) if backbone.layer_decay is not None else 1.0
        optimized.append({"params": parameters, "lr": backbone.lr * decay})
    return [*optimized, {"params": head, "lr": head_lr}]
