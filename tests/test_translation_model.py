"""The encoder-decoder translation model: shapes, causality, padding, greedy vs beam search, alignment; and the
reversible subword tokenizer it reads and writes."""

import pytest
import torch

from attn_models.translation_transformer import TranslationTransformer
from tasks.data.datasets import BOS, EOS, PAD, UNK, encode_targets, train_tokenizer

VOCAB, PAD_ID, BOS_ID, EOS_ID = 40, 0, 2, 3


def tiny_model(**overrides) -> TranslationTransformer:
    torch.manual_seed(0)
    args = (
        dict(
            vocab_size=VOCAB,
            embed_dim=32,
            encoder_depth=2,
            decoder_depth=2,
            num_heads=4,
            mlp_ratio=2.0,
            dropout=0.0,
            max_len=32,
        )
        | overrides
    )
    return TranslationTransformer(**args).eval()


def random_ids(*shape) -> torch.Tensor:
    return torch.randint(4, VOCAB, shape)  # no special tokens


def test_logits_and_alignment_shapes():
    model, source, target = tiny_model(), random_ids(3, 7), random_ids(3, 5)
    assert model(source, target).shape == (3, 5, VOCAB)
    alignment = model.cross_attention(source, target)
    assert alignment.shape == (3, 5, 7)
    assert torch.allclose(alignment.sum(-1), torch.ones(3, 5), atol=1e-5)


def test_a_later_target_token_does_not_change_earlier_logits():
    model, source, target = tiny_model(), random_ids(2, 6), random_ids(2, 8)
    changed = target.clone()
    changed[:, 5] = (target[:, 5] + 1 - 4) % (VOCAB - 4) + 4
    before, after = model(source, target), model(source, changed)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-5)
    assert not torch.allclose(before[:, 5:], after[:, 5:], atol=1e-3)


def test_padding_changes_nothing():
    model = tiny_model()
    source, target = random_ids(1, 6), random_ids(1, 4)
    padded_source = torch.cat([source, torch.full((1, 3), PAD_ID)], dim=1)
    padded_target = torch.cat([target, torch.full((1, 2), PAD_ID)], dim=1)
    assert torch.allclose(model(source, target), model(padded_source, padded_target)[:, :4], atol=1e-5)
    # a short sentence decodes the same alone and in a batch with a longer one
    longer = random_ids(1, 9)
    batch = torch.cat([padded_source, longer], dim=0)
    for decode in (lambda s: model.greedy_decode(s, 8), lambda s: model.beam_search(s, 8, beam_size=3)):
        alone, together = decode(source)[0], decode(batch)[0]
        assert torch.equal(alone, together[: len(alone)]) and (together[len(alone) :] == PAD_ID).all()


def test_incremental_decoding_step_equals_the_full_decoder():
    model, source, target = tiny_model(), random_ids(2, 6), random_ids(2, 5)
    full = model(source, target)  # (B, T, V), every position at once
    memory, source_padding = model.encode(source)
    past = [None] * len(model.decoder)
    for position in range(target.shape[1]):
        step = model.next_token_logits(target[:, position], position, memory, source_padding, past)
        expected = full[:, position].clone()
        expected[:, [PAD_ID, BOS_ID]] = float("-inf")
        assert torch.allclose(step, expected, atol=1e-4)
    assert past[0].shape == (2, 5, 32)


def test_beam_of_one_is_greedy_and_wider_beams_end_with_eos_then_padding():
    model, source = tiny_model(), random_ids(4, 6)
    greedy = model.greedy_decode(source, 12)
    assert torch.equal(model.beam_search(source, 12, beam_size=1), greedy)
    beams = model.beam_search(source, 12, beam_size=4)
    assert beams.shape[0] == 4 and beams.shape[1] <= 12
    for row in beams:
        eos = (row == EOS_ID).nonzero()
        if len(eos):  # everything after the first EOS is padding
            assert (row[eos[0, 0] + 1 :] == PAD_ID).all()
        assert BOS_ID not in row.tolist()


def test_a_trained_model_decodes_its_training_pairs():
    """Learn two reversed sentences of different lengths; greedy and beam search then give both back exactly."""
    model = tiny_model(dropout=0.0).train()
    source = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, PAD_ID, PAD_ID]])
    wanted = torch.tensor([[9, 8, 7, 6, 5, EOS_ID], [12, 11, 10, EOS_ID, PAD_ID, PAD_ID]])
    target_in = torch.cat([torch.full((2, 1), BOS_ID), wanted[:, :-1]], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits = model(source, target_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), wanted.reshape(-1), ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert torch.equal(model.greedy_decode(source, 10), wanted)
    assert torch.equal(model.beam_search(source, 10, beam_size=3), wanted)


def test_max_new_tokens_follows_the_source_length_and_limits():
    model = tiny_model(max_len=32)
    source = torch.cat([random_ids(1, 4), torch.full((1, 4), PAD_ID)], dim=1)
    assert model.max_new_tokens(source, limit=100, ratio=1.5) == 16  # 1.5 * 4 + 10
    assert model.max_new_tokens(source, limit=5, ratio=1.5) == 5
    assert model.max_new_tokens(random_ids(1, 30), limit=100, ratio=1.5) == 31  # max_len - 1


SENTENCES = [
    "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    "Two young, White males are outside near many bushes.",
    "Freitag, 5. März 2021; 1.234,50 €; 2 Kilowattstunden",
    "Friday, March 5, 2021; €1,234.50; 2 kilowatt-hours",
    "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
    "A man in an orange hat starring at something.",
]


def test_reversible_tokenizer_round_trips_and_has_the_special_tokens():
    tokenizer = train_tokenizer(SENTENCES * 3, vocab_size=120, reversible=True)
    assert [tokenizer.token_to_id(token) for token in (PAD, UNK, BOS, EOS)] == [0, 1, 2, 3]
    for sentence in SENTENCES + ["Männer, Büsche und 5 Hüte.", "im  Freien"]:  # unseen word combinations too
        encoding = tokenizer.encode(sentence)
        assert tokenizer.decode(encoding.ids) == sentence
        assert len(encoding.ids) < len(sentence)  # subwords, not characters
    ids = encode_targets(tokenizer, SENTENCES[:1], max_len=6)[0]
    assert len(ids) == 6 and ids[0] == 2 and ids[-1] == 3
    assert tokenizer.decode(encode_targets(tokenizer, SENTENCES[1:2], max_len=100)[0].tolist()) == SENTENCES[1]


@pytest.mark.parametrize("reversible", [False, True])
def test_the_two_tokenizer_kinds_split_words_differently(reversible):
    tokenizer = train_tokenizer(SENTENCES, vocab_size=80, reversible=reversible)
    pieces = tokenizer.encode("Männer, Büsche").tokens
    assert (pieces[0].startswith("▁")) == reversible  # Metaspace marks word starts; Whitespace splits punctuation
