"""The text classifier's bare-loop looks (benchmarks/text_variants.py): variants parse, train and are scored."""

import pytest

from benchmarks import text_variants
from tests.test_linear_baseline import TOPICS, write_split


def test_a_variant_splits_into_the_loops_settings_and_the_models():
    name, loop, model = text_variants.parse_variant('td={"token_dropout": 0.25, "epochs": 2, "embed_init_std": 1.0}')
    assert name == "td" and loop["epochs"] == 2 and loop["embed_init_std"] == 1.0 and loop["lr"] == 1e-3
    assert model["token_dropout"] == 0.25 and "epochs" not in model and model["embed_dim"] == 128
    assert text_variants.parse_variant("default")[1] == text_variants.LOOP_KEYS
    with pytest.raises(SystemExit, match="variant 'x': the settings must be a JSON object"):
        text_variants.parse_variant("x=[1]")
    with pytest.raises(SystemExit, match="variant 'y': its settings are not JSON"):
        text_variants.parse_variant("y={epochs: 2}")


def test_variants_train_on_the_prepared_split_and_fill_a_row_each(tmp_path, capsys, monkeypatch):
    """Each label has its own words: a few epochs separate the test split; a wrong model argument fails the run."""
    monkeypatch.setattr(text_variants, "MODEL", dict(embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0, dropout=0.0))
    for split, count in (("train", 32), ("val", 4), ("test", 4)):
        rows = [(f"the {words[i % 4]} and the {words[(i + 1) % 4]} today", label)
                for label, words in TOPICS.items() for i in range(count)]  # fmt: skip
        write_split(tmp_path, split, rows)
    text_variants.main(
        [str(tmp_path), 'a={"epochs": 30, "lr": 0.01}', 'b={"epochs": 30, "lr": 0.01, "pool": "attention"}']
    )
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
    assert len(rows) == 2
    assert all(row.split(" | ")[3] == "1.0000" for row in rows)  # the test column
    with pytest.raises(TypeError, match="colour"):
        text_variants.main([str(tmp_path), 'c={"colour": 1}'])
