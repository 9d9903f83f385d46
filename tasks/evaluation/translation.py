"""Translation with a trained TranslationTransformer: decode batches (beam search or greedy), detokenize, score with
sacrebleu, and the cross-attention alignment of an output with its source. Used by the evaluate stage and by the
served model, so both translate the same way."""
import sacrebleu
import torch
from tokenizers import Tokenizer
from torch.nn.utils.rnn import pad_sequence

from tasks.data.datasets import encode_texts


def output_ids(row: torch.Tensor, eos_id: int, pad_id: int) -> list[int]:
    """A decoded row up to (without) its first [EOS] or padding."""
    ids = row.tolist()
    for position, token in enumerate(ids):
        if token in (eos_id, pad_id):
            return ids[:position]
    return ids


@torch.no_grad()
def translate_ids(model, sources: list[torch.Tensor], *, beam_size: int, length_penalty: float, max_decode_len: int,
                  decode_len_ratio: float, batch_size: int, device: torch.device) -> list[list[int]]:
    """Output token ids (no [BOS], [EOS] or padding) of each source; beam_size 1 decodes greedily."""
    model.eval()
    outputs = []
    for start in range(0, len(sources), batch_size):
        batch = pad_sequence(sources[start:start + batch_size], batch_first=True, padding_value=model.pad_id).to(device)
        max_new = model.max_new_tokens(batch, max_decode_len, decode_len_ratio)
        if beam_size == 1:
            decoded = model.greedy_decode(batch, max_new)
        else:
            decoded = model.beam_search(batch, max_new, beam_size, length_penalty)
        outputs += [output_ids(row, model.eos_id, model.pad_id) for row in decoded.cpu()]
    return outputs


def translate_sentences(model, tokenizer: Tokenizer, sentences: list[str], settings: dict,
                        device: torch.device) -> tuple[list[torch.Tensor], list[list[int]], list[str]]:
    """Source ids, output ids and detokenized translations of raw sentences. settings: beam_size, length_penalty,
    max_decode_len, decode_len_ratio, batch_size (an eval section's)."""
    sources = encode_texts(tokenizer, sentences, model.max_len)
    outputs = translate_ids(model, sources, device=device, **settings)
    return sources, outputs, [tokenizer.decode(ids) for ids in outputs]


def decode_settings(eval_section) -> dict:
    return {key: getattr(eval_section, key)
            for key in ("beam_size", "length_penalty", "max_decode_len", "decode_len_ratio", "batch_size")}


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict:
    """BLEU and chrF (sacrebleu's defaults: 13a tokenization, case-sensitive) of detokenized output."""
    return {"bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score}


@torch.no_grad()
def alignment(model, tokenizer: Tokenizer, source: torch.Tensor, output: list[int]) -> dict:
    """Which source subwords each output subword (and the final [EOS]) attended to: the cross-attention, averaged
    over heads and layers, as a (output tokens x source tokens) matrix whose rows sum to 1."""
    emitted = torch.tensor([*output, model.eos_id])
    device = model.embed.weight.device
    weights = model.cross_attention(source[None].to(device), emitted[None].to(device))[0]
    return {"source_tokens": [tokenizer.id_to_token(int(i)) for i in source],
            "output_tokens": [tokenizer.id_to_token(int(i)) for i in emitted],
            "alignment": [[round(float(v), 5) for v in row] for row in weights.cpu()]}
