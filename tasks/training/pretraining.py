"""One pretraining, from the task's unlabelled data to the encoder's checkpoint (which training starts from:
tasks/training/job.py, ``start_from_pretrained``).

The pretrained model is the task's own classifier, built from the task's `model` section and resolved from the same
data as the train stage resolves it, so its encoder (embeddings, class token, blocks) fits the classifier the train
stage builds weight for weight; its class head is never trained and is left out of the checkpoint. The tokenizer is
learned on the labelled training texts and the unlabelled ones together (the kind's learn_tokenizer), saved beside the
checkpoint, and the train stage tokenizes with that one: the pretrained embedding rows mean those subwords.

The loop is plain: AdamW, a linear warm-up over the first tenth of the steps (at most WARMUP_STEPS), then the
constant rate, gradients clipped at norm 1; it ends after pretrain.steps or pretrain.budget_minutes, whichever comes
first. Batches are drawn from the texts in a seeded order, a new shuffle each pass, so a run without a budget is
repeatable on the CPU. What it reports goes to ``on_point(step, metrics)``: every pretrain.log_every steps the mean
loss and masked-token accuracy since the last point (the curves the stage logs).
"""

import time
from pathlib import Path

import torch

from tasks.names import CHECKPOINT, TOKENIZER
from tasks.paths import ProjectPaths
from tasks.reproducibility import resolve_device, set_seeds

WARMUP_STEPS = 100  # the most warm-up steps: a tenth of the steps, up to this
CLIP_NORM = 1.0
LOSS, ACCURACY = "pretrain_loss", "pretrain_masked_accuracy"  # the curves' metric names


def pretrain_and_save(task: str, params, root: Path, out_dir: Path, on_point) -> dict:
    """Pretrain the task's encoder on data/<task>/'s unlabelled data and write out_dir/CHECKPOINT and its tokenizer;
    returns what it did (steps, seconds, the last point's metrics, the resolved `auto` values). params: the whole
    tasks.params.Params."""
    spec, seed, section = params.kind(task), params.global_.seed, params.task(task)
    set_seeds(seed)
    device = resolve_device(params.global_.device)
    data_dir = ProjectPaths(root).task_data(task)
    tokenizer = spec.learn_tokenizer(data_dir, section)
    tokenizer.save(str(out_dir / TOKENIZER))
    section, resolved = spec.resolve(section, data_dir, tokenizer)  # as the train stage resolves it
    splits = spec.load_splits(data_dir, section, seed, tokenizer)  # the class count: the classifier it will be
    args = spec.model_args(section, splits, tokenizer)
    classifier = spec.build_model(args)
    objective = OBJECTIVES[section.pretrain.objective]
    done = objective(classifier, data_dir, section, tokenizer, device, seed, on_point)
    torch.save({"kind": spec.name, "objective": section.pretrain.objective, "model_args": args,
                "encoder": classifier.cpu().encoder_state(), "resolved": resolved, **done},
               out_dir / CHECKPOINT)  # fmt: skip
    return {**done, "resolved": resolved}


def masked_tokens(classifier, data_dir: Path, section, tokenizer, device, seed: int, on_point) -> dict:
    """Text: masked-token prediction (attn_models/masked_lm.py) over the unlabelled texts, cut at model.max_len."""
    from torch.nn.utils.rnn import pad_sequence

    from attn_models.masked_lm import MaskedTokenModel, mask_tokens, masked_loss
    from tasks.data.datasets import MASK, encode_texts
    from tasks.data.unlabelled import read_unlabelled_texts

    p = section.pretrain
    texts = encode_texts(tokenizer, read_unlabelled_texts(data_dir), section.model.max_len)
    mask_id = tokenizer.token_to_id(MASK)
    model = MaskedTokenModel(classifier).to(device).train()
    generator = torch.Generator().manual_seed(seed)

    def batches():
        while True:  # a new shuffle every pass over the texts
            order = torch.randperm(len(texts), generator=generator).tolist()
            for start in range(0, len(order), p.batch_size):
                yield pad_sequence([texts[i] for i in order[start : start + p.batch_size]], batch_first=True)

    def step_loss(ids):
        inputs, targets = mask_tokens(ids, p.mask_ratio, mask_id, mask_id + 1, tokenizer.get_vocab_size(), generator)
        return masked_loss(model(inputs.to(device)), targets.to(device))

    return run_steps(model, batches(), step_loss, p, on_point)


def run_steps(model, batches, step_loss, p, on_point) -> dict:
    """The optimizer loop every objective shares: step_loss(batch) -> (loss, accuracy); p: the pretrain section."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr)
    warmup = max(1, min(WARMUP_STEPS, (p.steps or 10 * WARMUP_STEPS) // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    deadline = time.perf_counter() + 60 * p.budget_minutes if p.budget_minutes is not None else float("inf")
    started, step, window, point = time.perf_counter(), 0, [], {}
    while (p.steps is None or step < p.steps) and time.perf_counter() < deadline:
        loss, accuracy = step_loss(next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()
        schedule.step()
        step += 1
        window.append((loss.item(), accuracy.item()))
        if step % p.log_every == 0:
            point, window = mean_point(window), []
            on_point(step, point)
    if window:  # the steps since the last point (a budget or steps not a multiple of log_every)
        point = mean_point(window)
        on_point(step, point)
    return {"steps": step, "seconds": time.perf_counter() - started, **point}


def mean_point(window: list[tuple[float, float]]) -> dict:
    """One point of the curves: the mean loss and accuracy of the steps in the window."""
    return {LOSS: sum(w[0] for w in window) / len(window), ACCURACY: sum(w[1] for w in window) / len(window)}


OBJECTIVES = {"masked_tokens": masked_tokens}  # pretrain.objective (resolved) -> its loop
