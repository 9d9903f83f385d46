"""Beam size and length penalty chosen on validation: a trained sequence model (translation, speech recognition)
decodes its validation split with each setting of a grid, and the setting with the best validation score is the
one to put in the task's `eval` (docs/real_data.md, "Decoding settings").

    python benchmarks/decoding_grid.py --project outputs/benchmarks/multi30k
    python benchmarks/decoding_grid.py --project . --task translation-de-en --beams 1 4 --penalties 0 1

The project is one the pipeline (or benchmarks/real_data.py) trained in: its params.yaml, its data/ and the newest
checkpoint under outputs/. Decoding is the evaluate stage's (`SequenceKind.decode`), scored with its metrics. The
test split is then decoded with the chosen setting and with the configured one, to show whether the choice carries
over (it is not chosen by).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.kinds import load_trained  # noqa: E402
from tasks.kinds.sequence import SequenceKind  # noqa: E402
from tasks.params import load_params  # noqa: E402
from tasks.reproducibility import resolve_device  # noqa: E402


def newest_checkpoint(project: Path) -> Path:
    checkpoints = sorted((project / "outputs").glob("*/checkpoint.pt"), key=lambda path: path.stat().st_mtime)
    if not checkpoints:
        sys.exit(f"error: no outputs/*/checkpoint.pt in {project}: train there first (make run)")
    return checkpoints[-1]


def split_texts(spec: SequenceKind, data_dir: Path, section, split: str) -> list[str]:
    """The references of a split, in its order (the test split's through its kind's own reader)."""
    if split == "test":
        return spec.test_texts(data_dir, section)[1]
    from tasks.data.datasets import read_parallel
    from tasks.kinds.translation import languages

    if spec.name != "translation":
        sys.exit(f"error: validation references of {spec.name} are not read here yet (translation only)")
    return read_parallel(data_dir, split, languages(section))[1]


def grid(beams: list[int], penalties: list[float]) -> list[tuple[int, float]]:
    """Every (beam, penalty); greedy decoding (beam 1) has no length penalty, so it is tried once."""
    return [(beam, penalty) for beam in beams for penalty in (penalties if beam > 1 else penalties[:1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="a project the pipeline trained in")
    parser.add_argument("--task", help="a translation or asr task (default: the first that params.yaml runs)")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--penalties", type=float, nargs="+", default=[0.0, 0.6, 1.0, 1.4])
    options = parser.parse_args()
    project = options.project.resolve()
    params = load_params(project / "params.yaml")
    task = options.task or params.selected_tasks()[0]
    spec, section = params.kind(task), params.task(task)
    if not isinstance(spec, SequenceKind):
        sys.exit(f"error: {task} is not a sequence task (translation, asr): nothing to decode")
    checkpoint = newest_checkpoint(project)
    data_dir = project / "data" / task
    model, _, tokenizer, _, splits = load_trained(checkpoint, data_dir, section, params.global_.seed)
    device = resolve_device(params.global_.device)
    model.to(device)
    sets = {name: ([split[i][0] for i in range(len(split))], split_texts(spec, data_dir, section, name))
            for name, split in (("val", splits.val), ("test", splits.test))}  # fmt: skip
    sizes = f"{len(sets['val'][0])} validation and {len(sets['test'][0])} test inputs"
    print(f"{task}: {checkpoint.relative_to(project)}, {sizes}, {spec.primary_metric}, torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip

    def score(split: str, beam: int, penalty: float) -> float:
        sources, references = sets[split]
        settings = section.eval.decode_settings() | {"beam_size": beam, "length_penalty": penalty}
        outputs = spec.decode(model, sources, settings, device)
        return spec.score([tokenizer.decode(ids) for ids in outputs], references)[spec.primary_metric]

    print("| beam | length penalty | validation | seconds |\n| --- | --- | --- | --- |")
    rows = []
    for beam, penalty in grid(options.beams, options.penalties):
        started = time.perf_counter()
        rows.append((beam, penalty, score("val", beam, penalty)))
        print(f"| {beam} | {f'{penalty:g}' if beam > 1 else '-'} | {rows[-1][2]:.2f} | "
              f"{time.perf_counter() - started:.0f} |", flush=True)  # fmt: skip
    lower_is_better = spec.primary_metric.endswith(("wer", "cer"))
    beam, penalty, _ = (min if lower_is_better else max)(rows, key=lambda row: row[2])
    configured = (section.eval.beam_size, section.eval.length_penalty)
    print(f"\nchosen on validation: beam {beam}, length penalty {penalty:g}: test {score('test', beam, penalty):.2f}")
    if configured != (beam, penalty):
        test = score("test", *configured)
        print(f"configured: beam {configured[0]}, length penalty {configured[1]:g}: test {test:.2f}")


if __name__ == "__main__":
    main()
