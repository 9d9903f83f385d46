"""Issue 34, text: the masked-token objective (pure PyTorch), the encoder it hands to the classifier, the unlabelled
texts' import, and the `pretrain` section's validation. The pipeline run is in test_pretrain_pipeline.py."""

import pytest
import torch

from attn_models.masked_lm import IGNORED, MaskedTokenModel, mask_tokens, masked_loss
from attn_models.text_classifier import TextTransformer
from tasks.data.importers import DataImportError
from tasks.data.unlabelled import import_unlabelled_texts, read_unlabelled_texts
from tasks.params import Params, ParamsError, load_params, public_dump
from tests.conftest import TEXT, tiny_params, write_params

VOCAB, MASK_ID, ORDINARY = 40, 2, 3  # ids 0 [PAD], 1 [UNK], 2 [MASK], then ordinary tokens


def text_model(num_classes: int = 3, **changes) -> TextTransformer:
    torch.manual_seed(0)
    args = dict(vocab_size=VOCAB, num_classes=num_classes, max_len=16, embed_dim=32, depth=1, num_heads=2, dropout=0.0)
    return TextTransformer(**(args | changes))


def test_the_masked_token_loss_falls_on_a_tiny_repeated_corpus():
    """Four sentences repeated: after 150 steps the model predicts their hidden tokens far better than at the start
    (each token is determined by its neighbours, so a working objective learns them)."""
    sentences = torch.tensor(
        [[3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14], [15, 16, 17, 18, 19, 20], [21, 22, 23, 24, 25, 26]]
    )
    model = MaskedTokenModel(text_model())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)

    def loss_and_accuracy():
        inputs, targets = mask_tokens(sentences.repeat(4, 1), 0.3, MASK_ID, ORDINARY, VOCAB, generator)
        return masked_loss(model(inputs), targets)

    first = loss_and_accuracy()[0].item()
    for _ in range(150):
        loss, _ = loss_and_accuracy()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        model.eval()
        last, accuracy = loss_and_accuracy()
    assert last.item() < first / 3, (first, last.item())
    assert accuracy.item() > 0.8


def test_masking_chooses_ordinary_tokens_in_bert_proportions():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(ORDINARY, VOCAB, (400, 50), generator=generator)
    ids[:, 40:] = 0  # padding
    ids[:, 0] = 1  # an [UNK]
    inputs, targets = mask_tokens(ids, 0.15, MASK_ID, ORDINARY, VOCAB, generator)
    chosen = targets != IGNORED
    assert not chosen[:, 40:].any() and not chosen[:, 0].any()  # never padding, never a special token
    assert torch.equal(targets[chosen], ids[chosen])  # the targets are the original tokens
    assert torch.equal(inputs[~chosen], ids[~chosen])  # what is not chosen is left alone
    assert abs(chosen[:, 1:40].float().mean().item() - 0.15) < 0.01
    masked = (inputs[chosen] == MASK_ID).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()  # kept, or a random token that happens to be it
    assert abs(masked - 0.8) < 0.03 and abs(kept - 0.1) < 0.03
    assert (inputs[chosen] >= ORDINARY).logical_or(inputs[chosen] == MASK_ID).all()  # random tokens are ordinary


def test_every_text_with_an_ordinary_token_gets_a_target():
    ids = torch.tensor([[5, 0, 0], [1, 7, 0], [1, 0, 0]])
    _, targets = mask_tokens(ids, 0.01, MASK_ID, ORDINARY, VOCAB, torch.Generator().manual_seed(0))
    assert targets.tolist() == [[5, IGNORED, IGNORED], [IGNORED, 7, IGNORED], [IGNORED] * 3]


def test_the_classifier_starts_from_the_pretrained_encoder_with_a_new_head():
    pretrained = text_model(num_classes=3)
    MaskedTokenModel(pretrained)  # its head ties to the embedding: nothing of it goes into the classifier
    with torch.no_grad():
        for parameter in pretrained.parameters():
            parameter.add_(1.0)  # unlike any fresh initialisation
    state = pretrained.encoder_state()
    assert not any(name.startswith("head.") for name in state) and "token_embed.weight" in state
    classifier = text_model(num_classes=5)  # another task's classes
    head = classifier.head.weight.clone()
    classifier.load_encoder(state)
    for name, value in classifier.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(value, state[name]), name
    assert torch.equal(classifier.head.weight, head)  # new


def test_an_encoder_of_another_shape_is_refused():
    with pytest.raises(RuntimeError, match="size mismatch"):
        text_model().load_encoder(text_model(embed_dim=16).encoder_state())
    with pytest.raises(ValueError, match="missing"):
        text_model(depth=2).load_encoder(text_model(depth=1).encoder_state())


def test_unlabelled_texts_are_read_from_a_file_or_a_folder(tmp_path):
    (tmp_path / "in" / "b").mkdir(parents=True)
    (tmp_path / "in" / "a.txt").write_text("first text\n\n  second text  \n")
    (tmp_path / "in" / "b" / "c.txt").write_text("third\r\n")
    (tmp_path / "in" / "notes.md").write_text("not a text file")
    (tmp_path / "out").mkdir()
    assert import_unlabelled_texts(tmp_path / "in", tmp_path / "out") == {"unlabelled": 3}
    assert read_unlabelled_texts(tmp_path / "out") == ["first text", "second text", "third"]
    assert import_unlabelled_texts(tmp_path / "in" / "a.txt", tmp_path / "out") == {"unlabelled": 2}


@pytest.mark.parametrize(
    "make, phrase",
    [
        (lambda path: None, "not found"),
        (lambda path: path.mkdir(), "no .txt file"),
        (lambda path: path.write_text("\n \n"), "no text"),
        (lambda path: path.write_bytes(b"ok\n\xff\xfe bad"), "not UTF-8"),
    ],
)
def test_bad_unlabelled_texts_are_named(tmp_path, make, phrase):
    source = tmp_path / "unlabelled.txt"
    make(source)
    with pytest.raises(DataImportError, match=phrase) as error:
        import_unlabelled_texts(source, tmp_path)
    assert str(source) in str(error.value)


def with_pretrain(**pretrain) -> dict:
    params = tiny_params()
    params["tasks"][TEXT]["pretrain"] = pretrain
    return params


def test_an_absent_pretrain_section_leaves_the_params_as_they_were():
    """Not even a `pretrain: null`: the logged params and the lineage's params_hash of every task stay the same."""
    dumped = public_dump(Params.model_validate(tiny_params()))
    assert "pretrain" not in dumped["tasks"][TEXT]
    assert public_dump(Params.model_validate(dumped)) == dumped
    section = Params.model_validate(with_pretrain(source="texts")).task(TEXT)
    assert section.pretrain.mask_ratio == 0.15 and section.pretrain.objective == "auto"


@pytest.mark.parametrize(
    "pretrain, phrase",
    [
        ({}, "pretrain.source: Field required"),
        ({"source": "t", "mask_ratio": 1.0}, "pretrain.mask_ratio"),
        ({"source": "t", "steps": None}, "pretrain: Value error, steps or budget_minutes"),
        ({"source": "t", "objective": "masked_patches"}, "pretrain.objective"),
        ({"source": "t", "batchsize": 8}, "pretrain.batchsize"),
        ({"source": "t", "lr": 0}, "pretrain.lr"),
    ],
)
def test_pretrain_params_are_validated_with_the_key_named(tmp_path, pretrain, phrase):
    with pytest.raises(ParamsError, match=rf"tasks\.{TEXT}\.{phrase}"):
        load_params(write_params(tmp_path, with_pretrain(**pretrain)))


def test_pretraining_a_backbone_is_refused(tmp_path):
    params = with_pretrain(source="t")
    params["tasks"][TEXT]["model"] = {"dropout": 0.1, "backbone": {"source": "some/model"}}
    with pytest.raises(ParamsError, match=rf"tasks\.{TEXT}: .*pretrain: pretrains the from-scratch model"):
        load_params(write_params(tmp_path, params))
