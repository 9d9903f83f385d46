"""The real-data benchmark configs stay valid params files, and the benchmark's overrides and table work."""

import json

import pytest

from benchmarks import real_data
from tasks.params import Params, ParamsError

CONFIGS = sorted(path.stem for path in real_data.CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_is_valid_and_names_its_target(name, tmp_path):
    params, task, benchmark = real_data.load_config(name, tmp_path)
    loaded = Params.model_validate(params)
    assert loaded.selected_tasks() == [task]  # one task a config
    assert loaded.task(task).data.import_from.path.startswith(str(tmp_path))  # made absolute
    assert {"dataset", "metric", "target"} <= set(benchmark)


def test_overrides_are_validated_and_applied(tmp_path):
    params, task, _ = real_data.load_config("ag_news", tmp_path)
    changed = real_data.apply_overrides(params, task, ["train.epochs=2", "model.depth=1"])
    assert changed["tasks"][task]["train"]["epochs"] == 2 and changed["tasks"][task]["model"]["depth"] == 1
    with pytest.raises(ParamsError, match=f"tasks.{task}.train.epoch: no such key"):
        real_data.apply_overrides(params, task, ["train.epoch=2"])


def test_the_table_keeps_the_newest_result_per_config_and_device(tmp_path, monkeypatch):
    monkeypatch.setattr(real_data, "TABLE", tmp_path / "real_data.md")
    hardware = {"cpu": "Some CPU", "cpu_cores": 2, "gpu": None, "device": "cpu"}
    result = {
        "config": "ag_news",
        "dataset": "AG News",
        "metric": "test_accuracy",
        "target": 0.88,
        "metrics": {"test_accuracy": 0.8},
        "train_seconds": 600.0,
        "total_seconds": 660.0,
        "hardware": hardware,
        "git_sha": "0123456789ab",
        "command": "python benchmarks/real_data.py ag_news",
    }
    newer = json.loads(json.dumps(result))
    newer["metrics"]["test_accuracy"] = 0.9
    real_data.write_table([result, newer])
    table = real_data.TABLE.read_text()
    assert "| AG News | test_accuracy | 0.9 | >= 0.88 | yes | 10.0 min | 11.0 min | 2-core CPU (Some CPU) |" in table
    assert "| 0.8 |" not in table
    real_data.TABLE.write_text(table + f"\n{real_data.HAND_WRITTEN}\n\n## Measured by hand\n")
    real_data.write_table([result])
    table = real_data.TABLE.read_text()
    assert "| 0.8 |" in table and table.endswith(f"\n\n{real_data.HAND_WRITTEN}\n\n## Measured by hand\n")


def test_an_ablation_is_measured_against_its_recipe_as_written_even_when_the_config_took_up_a_change(monkeypatch):
    """The reference is the run whose recipe (config at its commit + its --set values) is the ablation's config at
    the ablation's commit with the ablation's values of the keys that run sets: after the config took up mixing,
    the earlier mixing ablation's run is the reference, not the older config run at the same budget; a quick pair
    that turns mixing off in both is a pair; a repeat of the same change is not a reference; a commit not in the
    repository has none. The old config is in the layout from before tasks had names (a section named after its
    kind), the new one in today's: a recipe is compared across the two."""
    configs = {
        "old": "benchmark: {target: 0.75}\nglobal: {modalities: [image]}\nimage: {task: cifar, train: {epochs: 30}}\n",
        "new": "benchmark: {target: 0.75}\ntasks: {cifar: {kind: image, train: {budget_minutes: 60, epochs: 1000, "
        "mixup_alpha: 0.8}}}\n",
    }
    monkeypatch.setattr(real_data, "config_at", lambda sha, config: configs.get(sha))
    budget = "--set train.budget_minutes=60 --set train.epochs=1000"

    def run(sha, day, sets="", ablation=None):
        return {"config": "cifar10_subset", "git_sha": sha, "date": f"2026-11-{day}T00:00:00+00:00",
                "hardware": {"device": "cpu"}, "budget_minutes": 60, "ablation": ablation,
                "command": f"python benchmarks/real_data.py cifar10_subset {budget} {sets}".strip()}  # fmt: skip

    plain = run("old", 20)  # the config before it took up mixing
    mixing = run("old", 21, "--set train.mixup_alpha=0.8", "mixup")
    newer_plain = run("old", 25)  # the old recipe again, nearer in time to the new ablation than `mixing`
    rand = run("new", 23, "--set data.augment.rand_ops=2", "RandAugment")
    unmixed = run("new", 22, "--set train.mixup_alpha=0")  # a quick pair shares a setting: mixing off
    pooled = run("new", 24, "--set train.mixup_alpha=0 --set model.pool=attention", "pooling")
    again = run("new", 24, "--set train.mixup_alpha=0 --set model.pool=attention", "pooling")  # a repeat: no reference
    results = [plain, mixing, newer_plain, rand, unmixed, pooled, again]
    assert real_data.reference_run(mixing, results) is plain
    assert real_data.reference_run(rand, results) is mixing
    assert real_data.reference_run(pooled, results) is unmixed
    assert real_data.reference_run({**rand, "git_sha": "elsewhere"}, results) is None
