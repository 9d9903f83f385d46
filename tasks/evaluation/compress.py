"""Building and measuring the compressed variants of a trained model (the compress stage, tasks/stages/compress.py).

Variants (tasks/schema.py VARIANTS): ``float`` (the trained model), ``int8`` (every nn.Linear dynamically quantized),
``pruned`` (the least important attention heads of each layer removed, Michel et al., 2019, optionally fine-tuned)
and ``pruned+int8``; the how is in attn_models/compression.py. Each is measured on the CPU:

- size: its state dict as torch.save writes it (MB);
- latency: p50 and p95 over ``latency_repeats`` timed calls (after one warm-up) of the kind's ``timed_call`` on
  a batch of 1 and of 32 test inputs (the test split repeated when it is smaller), with torch held to
  ``threads`` CPU threads: a classifier's forward pass, a sequence model's greedy decoding;
- the kind's ``compress_metric`` on the validation split, which the compact variant is chosen by (a classifier's
  validation accuracy as the evaluate stage computes it; a sequence model's greedy-decoding BLEU or WER), and its
  change from the float model's. The test split is only timed, never scored: it must not choose.
"""

import copy
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from attn_models.compression import head_importance, heads_to_keep, prune_heads, quantize_int8, state_dict_bytes
from tasks.schema import REFERENCE_VARIANT, VARIANTS
from tasks.training.loop import make_loader

LATENCY_BATCHES = (1, 32)  # batch sizes timed: one request, and a full batch
MB = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    """One row of the variants table."""

    variant: str
    size_mb: float
    p50_ms_b1: float
    p95_ms_b1: float
    p50_ms_b32: float
    p95_ms_b32: float
    metric: float
    change: float  # metric - the float model's metric

    def as_metrics(self) -> dict[str, float]:
        """MLflow metrics: compress_<figure>.<variant>, e.g. compress_p50_ms_b32.int8 (the metric: compress_metric);
        MLflow takes no "+" in a name, so pruned+int8 is pruned_int8 there."""
        figures = {key: value for key, value in asdict(self).items() if key != "variant"}
        return {f"compress_{key}.{self.variant.replace('+', '_')}": value for key, value in figures.items()}


@contextmanager
def torch_threads(threads: int):
    """torch's intra-op CPU threads held at threads, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def percentiles_ms(call, repeats: int) -> tuple[float, float]:
    """(p50, p95) in milliseconds of repeats timed calls, after one untimed warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    if repeats == 1:
        return times[0], times[0]
    cuts = statistics.quantiles(times, n=20, method="inclusive")  # 5%, 10%, ..., 95%
    return statistics.median(times), cuts[-1]


def test_batch(splits, size: int):
    """The first size test inputs as one batch, as the test loader gives them (cycling when the split is smaller)."""
    indices = [i % len(splits.test) for i in range(size)]
    inputs, _ = next(iter(make_loader(torch.utils.data.Subset(splits.test, indices), splits, size)))
    return inputs


def pruned_model(model, spec, splits, section, settings, seed: int) -> tuple[torch.nn.Module, dict]:
    """A copy of model without the least important prune_fraction of each layer's heads (importance on
    importance_batches validation batches), fine-tuned finetune_steps steps; and the record of what was kept."""
    loader = make_loader(splits.val, splits, section.train.batch_size)
    batches = [batch for _, batch in zip(range(settings.importance_batches), loader)]

    def loss(model, batch):
        inputs, targets = batch
        return F.cross_entropy(*spec.logits_and_labels(model, inputs, targets))

    model = copy.deepcopy(model).eval()
    importance = head_importance(model, batches, loss)
    kept = heads_to_keep(importance, settings.prune_fraction)
    prune_heads(model, kept)
    if settings.finetune_steps:
        finetune(model, spec, splits, section, settings.finetune_steps, seed)
    record = {"importance": {name: [round(float(v), 6) for v in scores] for name, scores in importance.items()},
              "kept_heads": kept, "finetune_steps": settings.finetune_steps}  # fmt: skip
    return model, record


def finetune(model, spec, splits, section, steps: int, seed: int) -> None:
    """steps training steps (the kind's training loss, AdamW at the section's learning rate), in place."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=section.train.lr, weight_decay=section.train.weight_decay)
    loader = make_loader(splits.train, splits, section.train.batch_size, shuffle=True, seed=seed)
    model.train()
    done = 0
    while done < steps:
        for inputs, targets in loader:
            loss, _, _ = spec.training_loss(model, inputs, targets, section.train)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    model.eval()


def build_variants(model, spec, splits, section, settings, seed: int) -> tuple[dict, dict | None]:
    """name -> the float model the variant is built from and whether it is quantized, for each variant in
    settings.variants; and the pruning record (None when no variant prunes). Quantizing is left to measuring and
    serving (``quantize_int8``), as it is a function of those weights."""
    pruned, record = None, None
    if any(VARIANTS[name][0] for name in settings.variants):
        pruned, record = pruned_model(model, spec, splits, section, settings, seed)
    return {name: (pruned if VARIANTS[name][0] else model, VARIANTS[name][1]) for name in settings.variants}, record


def measure(name: str, model, spec, evaluation, settings, reference: float | None) -> Measured:
    """One variant's row: size, latencies, metric (on the CPU) and its change from reference (float's metric)."""
    metric = float(spec.compress_score(evaluation))
    latencies = {}
    with torch_threads(settings.threads), torch.inference_mode():
        for size in LATENCY_BATCHES:
            inputs = test_batch(evaluation.splits, size)
            latencies[size] = percentiles_ms(
                lambda inputs=inputs: spec.timed_call(model, inputs, evaluation.section), settings.latency_repeats
            )
    return Measured(
        variant=name,
        size_mb=state_dict_bytes(model) / MB,
        p50_ms_b1=latencies[1][0],
        p95_ms_b1=latencies[1][1],
        p50_ms_b32=latencies[32][0],
        p95_ms_b32=latencies[32][1],
        metric=metric,
        change=0.0 if reference is None else metric - reference,
    )


def measure_variants(variants: dict, spec, evaluation, settings) -> list[Measured]:
    """Every variant measured, float first (the reference); quantized ones built here from their float weights."""
    rows, reference = [], None
    for name in sorted(variants, key=lambda name: name != REFERENCE_VARIANT):
        model, quantize = variants[name]
        model = quantize_int8(model) if quantize else model
        row = measure(name, model, spec, _with_model(evaluation, model), settings, reference)
        reference = row.metric if reference is None else reference
        rows.append(row)
    return rows


def _with_model(evaluation, model):
    return type(evaluation)(**{**evaluation.__dict__, "model": model})


def tradeoff_figure(rows: list[Measured], metric: str, title: str):
    """Two panels, one point per variant: the metric against p50 latency at batch 32, and against size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axes, key, label in ((panels[0], "p50_ms_b32", "p50 latency at batch 32 (ms)"),
                             (panels[1], "size_mb", "size on disk (MB)")):  # fmt: skip
        for row in rows:
            axes.scatter(getattr(row, key), row.metric)
            axes.annotate(row.variant, (getattr(row, key), row.metric), textcoords="offset points", xytext=(4, 4))
        axes.set(xlabel=label, ylabel=metric)
        axes.set_xlim(left=0)
        axes.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
