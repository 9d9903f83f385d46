"""Batch mixing (mixup, CutMix) for the image model, and token dropout for the text model: the regularisers of
issue 17's recipes for small real datasets."""

import pytest
import torch
import torch.nn.functional as F

from attn_models.text_classifier import TextTransformer
from tasks.training.mixing import cut_box, mix_batch, mixed_loss


def distinct_batch(size=6):
    """Each image constant at its own value, so every pixel of a mixed image tells whose it is."""
    return torch.arange(1.0, size + 1).view(size, 1, 1, 1).expand(size, 3, 8, 8).clone()


def test_without_alphas_the_batch_is_trained_as_it_is():
    torch.manual_seed(0)
    inputs, state = distinct_batch(), torch.get_rng_state()
    mixed, partner, share = mix_batch(inputs, 0.0, 0.0)
    assert mixed is inputs and share == 1.0 and partner.tolist() == list(range(6))
    assert torch.equal(torch.get_rng_state(), state)  # no draw: runs without mixing train as before the keys existed
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert torch.equal(mixed_loss(logits, labels, partner, share, 0.1), expected)


def test_mixup_blends_each_image_with_its_partner_by_the_share():
    torch.manual_seed(1)
    inputs = distinct_batch()
    mixed, partner, share = mix_batch(inputs, 0.8, 0.0)
    assert 0 < share < 1 and sorted(partner.tolist()) == list(range(6))
    assert torch.allclose(mixed, share * inputs + (1 - share) * inputs[partner])


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_pastes_one_box_of_the_partner_and_its_share_is_the_area_kept(seed):
    torch.manual_seed(seed)
    inputs = distinct_batch()
    mixed, partner, share = mix_batch(inputs, 0.0, 1.0)
    own = mixed == inputs
    pasted = mixed == inputs[partner]
    changed = partner != torch.arange(6)
    assert (own | pasted).all()  # every pixel is its own or its partner's
    for index in torch.nonzero(changed).flatten():
        kept = own[index, 0].float().mean().item()
        assert kept == pytest.approx(share)  # the labels are weighed by the area actually kept
        rows, cols = torch.nonzero(~own[index, 0], as_tuple=True)
        if len(rows):  # the pasted pixels fill one rectangle
            assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)


def test_a_cut_box_stays_inside_the_image():
    torch.manual_seed(0)
    for share in (0.0, 0.3, 0.9, 1.0):
        top, bottom, left, right = cut_box(8, 12, share)
        assert 0 <= top <= bottom <= 8 and 0 <= left <= right <= 12


def test_the_mixed_loss_weighs_both_labels_by_the_share():
    logits, labels, partner = torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.tensor([1, 0, 3, 2])
    expected = 0.3 * F.cross_entropy(logits, labels) + 0.7 * F.cross_entropy(logits, labels[partner])
    assert mixed_loss(logits, labels, partner, 0.3, 0.0) == pytest.approx(expected.item())


def test_token_dropout_hides_tokens_in_training_only():
    torch.manual_seed(0)
    plain = TextTransformer(vocab_size=50, num_classes=3, max_len=16, embed_dim=16, depth=1, num_heads=2, dropout=0.0)
    dropping = TextTransformer(vocab_size=50, num_classes=3, max_len=16, embed_dim=16, depth=1, num_heads=2,
                               dropout=0.0, token_dropout=0.3)  # fmt: skip
    dropping.load_state_dict(plain.state_dict())
    tokens = torch.randint(1, 50, (8, 16))
    plain.eval(), dropping.eval()
    assert torch.equal(dropping(tokens), plain(tokens))  # evaluation sees every token
    dropping.train(), plain.train()
    assert not torch.allclose(dropping(tokens), plain(tokens))
    with pytest.raises(ValueError, match="token_dropout"):
        TextTransformer(vocab_size=50, num_classes=3, token_dropout=1.0)
