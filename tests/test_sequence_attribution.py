"""The sequence attribution methods on an encoder-decoder built by hand so that output token t reads source position
t alone, where the right answer is known; their shapes and curves on both real sequence models
(attn_models/sequence_attribution.py)."""

import pytest
import torch

from attn_models.attention import Encoder
from attn_models.encoder_decoder import EncoderDecoder
from attn_models.sequence_attribution import (
    SEQUENCE_METHODS,
    output_token_maps,
    reference_input,
    removal_log_probs,
)
from attn_models.speech_recognizer import SpeechRecognizer
from attn_models.translation_transformer import TranslationTransformer

EMBED, VOCAB, UNK = 16, 8, 1  # channels 0-7 say the position, 8-15 the token; tokens 4-7 are words
SOURCE = torch.tensor([[4, 6, 5, 7, 4, 6]])
TARGET = torch.tensor([2, 4, 6, 5, 7, 4, 6])  # [BOS], then a copy of the source: token t is source word t


class PositionCopier(EncoderDecoder):
    """One decoder layer, one head, over the shared Encoder: source and target tokens carry their position in a
    channel of its own (the position table is replaced by a scaled identity), the cross-attention's query at position
    t matches the key at position t alone, and its values carry the source word into the channels the tied output
    projection reads. Everything else is zero, so output token t is the word at source position t and nothing else."""

    def __init__(self):
        super().__init__(VOCAB, EMBED, decoder_depth=1, num_heads=1, mlp_ratio=1.0, dropout=0.0, max_len=8)
        self.encoder = Encoder(EMBED, depth=1, num_heads=1, mlp_ratio=1.0)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.zero_()
            for module in self.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.fill_(1.0)
            self.positions.copy_(torch.eye(8, EMBED) * 3.0)
            for word in range(4, VOCAB):
                self.embed.weight[word, 8 + word] = 1.0
            cross = self.decoder[0].cross_attn
            cross.q_proj.weight[:8, :8] = torch.eye(8) * 4  # position t asks for position t ...
            cross.k_proj.weight[:8, :8] = torch.eye(8) * 4  # ... which only key t has
            cross.v_proj.weight[8:, 8:] = torch.eye(8) * 6  # the word passes through
            cross.out_proj.weight[8:, 8:] = torch.eye(8)
        self.eval()

    def encode(self, source):
        padding = source == self.pad_id
        memory, _ = self.encoder(self.embed_tokens(source), padding)  # the hooked call, as in both real models
        return memory, padding


def unknown_words(source: torch.Tensor) -> torch.Tensor:
    return torch.full_like(source, UNK)  # [UNK] has no word channel: the baseline says nothing


def test_the_copier_copies():
    model = PositionCopier()
    with torch.no_grad():
        probabilities = model(SOURCE, TARGET[None, :-1]).softmax(-1)[0]
    assert probabilities.argmax(-1).tolist() == TARGET[1:].tolist() and probabilities.max(-1).values.min() > 0.8


def test_every_method_but_random_finds_the_source_position_each_output_token_reads():
    model = PositionCopier()
    explained = output_token_maps(model, SOURCE, TARGET, reference_input(model, unknown_words(SOURCE)))
    tokens, units = len(TARGET) - 1, SOURCE.shape[1]
    with torch.no_grad():
        expected = model(SOURCE, TARGET[None, :-1]).log_softmax(-1)[0].gather(-1, TARGET[1:, None])[:, 0]
    assert torch.allclose(explained["log_probs"], expected, atol=1e-5)  # replica t's token t, as one plain pass
    for method in SEQUENCE_METHODS:
        relevance = explained["maps"][method]
        assert relevance.shape == (tokens, units) and relevance.min() >= 0
        assert torch.allclose(relevance.sum(-1), torch.ones(tokens), atol=1e-5)
    for method in ("cross_attention", "last_layer_attention", "gradient_attention", "input_x_gradient"):
        relevance = explained["maps"][method]
        assert relevance.argmax(-1).tolist() == list(range(tokens)), method
        assert relevance.diagonal().min() > 0.9, method
    assert explained["maps"]["random"].diagonal().max() < 0.9


def test_the_random_map_is_seeded():
    model = PositionCopier()
    reference = reference_input(model, unknown_words(SOURCE))
    first, again, other = (output_token_maps(model, SOURCE, TARGET, reference, seed=s)["maps"]["random"]
                           for s in (3, 3, 4))  # fmt: skip
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_removing_the_read_position_first_drops_each_token_and_the_reverse_order_keeps_it_to_the_end():
    model = PositionCopier()
    reference = reference_input(model, unknown_words(SOURCE))
    right = output_token_maps(model, SOURCE, TARGET, reference)["maps"]["gradient_attention"]
    units = SOURCE.shape[1]
    deletion = removal_log_probs(model, SOURCE, TARGET, right, reference, steps=units).exp()  # one unit a step
    assert deletion.shape == (units + 1, len(TARGET) - 1)
    assert deletion[0].min() > 0.8 and deletion[1:].max() < 0.1  # gone at the first step, for every token
    wrong = removal_log_probs(model, SOURCE, TARGET, 1 - right, reference, steps=units).exp()
    assert wrong[:-1].min() > 0.8 and wrong[-1].max() < 0.1
    insertion = removal_log_probs(model, SOURCE, TARGET, right, reference, steps=units, insertion=True).exp()
    assert insertion[0].max() < 0.1 and insertion[1:].min() > 0.8  # back at the first step


def test_against_the_source_itself_nothing_is_removed_and_input_x_gradient_is_uniform():
    model = PositionCopier()
    itself = reference_input(model, SOURCE)
    explained = output_token_maps(model, SOURCE, TARGET, itself)
    units = SOURCE.shape[1]
    assert torch.allclose(explained["maps"]["input_x_gradient"], torch.full((len(TARGET) - 1, units), 1 / units))
    same = removal_log_probs(model, SOURCE, TARGET, explained["maps"]["cross_attention"], itself, steps=3)
    assert torch.allclose(same, same[0].expand_as(same), atol=1e-5)


def translation_model():
    torch.manual_seed(0)
    return TranslationTransformer(vocab_size=30, embed_dim=16, encoder_depth=2, decoder_depth=2, num_heads=2,
                                  max_len=16).eval()  # fmt: skip


def speech_model():
    torch.manual_seed(0)
    return SpeechRecognizer(vocab_size=12, sample_rate=8000, n_mels=16, embed_dim=16, encoder_depth=2,
                            decoder_depth=2, num_heads=2, subsampling_layers=2).eval()  # fmt: skip


@pytest.mark.parametrize(
    "build, source, baseline",
    [
        (translation_model, torch.tensor([[5, 9, 12, 7, 20]]), lambda s: torch.full_like(s, UNK)),
        (speech_model, (torch.randn(1, 4000), torch.tensor([4000])), lambda s: (torch.zeros_like(s[0]), s[1])),
    ],
    ids=["translation: source subwords", "speech recognition: audio frames"],
)
def test_both_sequence_models_give_a_map_per_token_and_curves_from_the_models_own(build, source, baseline):
    """The hook finds the encoder input of both models (subword embeddings; subsampled frames): one row per output
    token, one column per memory position, rows summing to 1; the curves' first point is the model's own
    log-probability, and deleting everything is inserting nothing."""
    model = build()
    target = torch.tensor([2, 6, 8, 4, 3])
    units = int((~model.memory_padding(source)).sum())
    reference = reference_input(model, baseline(source))
    explained = output_token_maps(model, source, target, reference, seed=1)
    with torch.no_grad():
        own = model(source, target[None, :-1]).log_softmax(-1)[0].gather(-1, target[1:, None])[:, 0]
    for method in SEQUENCE_METHODS:
        relevance = explained["maps"][method]
        assert relevance.shape == (4, units) and torch.allclose(relevance.sum(-1), torch.ones(4), atol=1e-5)
    deletion = removal_log_probs(model, source, target, explained["maps"]["gradient_attention"], reference, steps=4)
    insertion = removal_log_probs(model, source, target, explained["maps"]["gradient_attention"], reference, steps=4,
                                  insertion=True)  # fmt: skip
    assert deletion.shape == insertion.shape == (5, 4)
    assert torch.allclose(deletion[0], own, atol=1e-4) and torch.allclose(insertion[-1], own, atol=1e-4)
    assert torch.allclose(deletion[-1], insertion[0], atol=1e-5)
    assert not torch.allclose(deletion[-1], own, atol=1e-3)  # the baseline changes what the model says
