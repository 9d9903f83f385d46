"""Where greedy decoding of a trained translation model spends its time, float and int8, at batch 32 on one thread
(torch.profiler): the profile behind docs/compress.md's "What limits the gains".

    usage: python benchmarks/compress_profile.py [CHECKPOINT]   (default: the newest translation checkpoint under
                                                                 outputs/; run `make run` first)
"""

import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from attn_models.compression import quantize_int8
from tasks.kinds import load_checkpoint

BATCH, SOURCE_TOKENS, NEW_TOKENS, SHOWN = 32, 20, 30, 8


def newest_translation_checkpoint() -> Path:
    for path in sorted(Path("outputs").glob("*/checkpoint.pt"), key=lambda p: p.stat().st_mtime, reverse=True):
        if torch.load(path, weights_only=True, map_location="cpu")["kind"] == "translation":
            return path
    raise SystemExit("no translation checkpoint under outputs/: run `make run` first")


def main(path: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, checkpoint = load_checkpoint(path)
    source = torch.randint(4, checkpoint["model_args"]["vocab_size"], (BATCH, SOURCE_TOKENS))
    for name, variant in (("float", model), ("int8", quantize_int8(model))):
        variant.greedy_decode(source, NEW_TOKENS)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as profiled:
            variant.greedy_decode(source, NEW_TOKENS)
        events = profiled.key_averages()
        total = sum(event.self_cpu_time_total for event in events)
        print(f"{name}: {total / 1000:.1f} ms self CPU time")
        for event in sorted(events, key=lambda event: -event.self_cpu_time_total)[:SHOWN]:
            print(
                f"  {event.key:50s} {event.self_cpu_time_total / 1000:8.1f} ms {event.self_cpu_time_total / total:6.1%}"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else newest_translation_checkpoint())
