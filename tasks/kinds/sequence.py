"""The sequence kinds: an encoder-decoder (attn_models.encoder_decoder) writes a token sequence for each
input, e.g. a translation or a transcript; its cross-attention over the input is the attention map (an alignment).

Training: teacher forcing, one label per target token. Evaluation: the test split decoded with beam search and
greedily, detokenized, scored by the kind (``score``) against the raw references; the hypotheses, sample
outputs and the alignment of ``eval.attention_maps`` test inputs, drawn by the kind; the validation split decoded
the same two ways for its primary metric (``val_metrics``), which models are chosen by. Explanation (the explain
stage): per output token, maps over the input by five methods, scored for faithfulness and, where the kind
knows the right alignment, localization (tasks/evaluation/explain_sequence.py). Serving: per input, the output text
and its alignment. Decoding settings come from the eval section (tasks/schema.py DecodeParams), so
evaluation and serving decode the same way.
"""

from abc import abstractmethod

from tasks.kinds.base import Evaluation, Explanation, val_name
from tasks.kinds.kind import Kind


def output_ids(row, eos_id: int, pad_id: int) -> list[int]:
    """A decoded row (a tensor) up to (without) its first [EOS] or padding."""
    ids = row.tolist()
    for position, token in enumerate(ids):
        if token in (eos_id, pad_id):
            return ids[:position]
    return ids


def split_sources(split) -> list:
    """The model inputs of a split (tasks.data.datasets.LabelledItems), in its order."""
    return [split[i][0] for i in range(len(split))]


class SequenceKind(Kind):
    attention_method = (
        "cross-attention of each output token over the input, averaged over heads and layers (rows sum to 1): the "
        "alignment of the output with the input"
    )
    outputs_folder: str  # artifact folder of the test outputs: translations/, transcripts/
    output_field: str  # the answer's field holding the output text: translation, transcript

    # ---- what each sequence kind provides -------------------------------------------------
    @abstractmethod
    def collate_sources(self, sources: list):
        """A batch of model inputs (what the model's encode takes) from a list of single inputs."""

    @abstractmethod
    def split_texts(self, data_dir, section, split: str) -> tuple[list[str], list[str]]:
        """(what each input of a split (val, test) is, as text: a sentence or a file name; its reference output), in
        the split's order."""

    def test_texts(self, data_dir, section) -> tuple[list[str], list[str]]:
        return self.split_texts(data_dir, section, "test")

    @abstractmethod
    def score(self, hypotheses: list[str], references: list[str]) -> dict[str, float]:
        """The test metrics of detokenized outputs, except the greedy one (``metrics[-1]``: the primary metric of
        greedy decoding, which the kind adds)."""

    def metric_tags(self, hypotheses: list[str], references: list[str]) -> dict[str, str]:
        """Tags that say exactly how the metrics were computed (e.g. sacrebleu's signature), to log on the run."""
        return {}

    def source_record(self, source, tokenizer) -> dict:
        """What the alignment record says about the input, e.g. its subword tokens."""
        return {}

    @abstractmethod
    def alignment_figure(self, record: dict, source, model):
        """A matplotlib figure of one alignment record (output tokens x input positions)."""

    @abstractmethod
    def request_source(self, value, checkpoint: dict, tokenizer, limits: dict):
        """One raw request value -> one model input (as a split's item holds it); a value it cannot take raises
        tasks.data.requests.BadRequest (limits: the served model's, global.serving)."""

    # ---- training -----------------------------------------------------------------------------
    def logits_and_labels(self, model, inputs, targets):
        """The decoder reads [BOS] y1 .. y_{T-1} and predicts y1 .. y_T [EOS]; padding is left out."""
        logits, labels = model(inputs, targets[:, :-1]), targets[:, 1:]
        keep = labels != model.pad_id
        return logits[keep], labels[keep]

    def describe_model(self, section) -> str:
        m = section.model
        depth = f"{m.encoder_depth}+{m.decoder_depth}"  # encoder + decoder layers
        return f"{self.model_class.rpartition(':')[2]}-d{depth}-w{m.embed_dim}-h{m.num_heads}"

    def serving_config(self, section) -> dict:
        return section.eval.decode_settings()

    # ---- decoding -----------------------------------------------------------------------------
    def decode(self, model, sources: list, settings: dict, device) -> list[list[int]]:
        """Output token ids (no [BOS], [EOS] or padding) of each input, in batches; beam_size 1 decodes greedily.
        settings: beam_size, length_penalty, max_decode_len, decode_len_ratio, batch_size."""
        import torch

        from tasks.progress import progress
        from tasks.training.loop import to_device

        model.eval()
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # similar lengths: less padding
        outputs, size = [None] * len(sources), settings["batch_size"]
        how = "greedy decoding" if settings["beam_size"] == 1 else f"beam search ({settings['beam_size']} beams)"
        with torch.no_grad(), progress(len(sources), f"{self.name} {how}", self.output_field + "s") as bar:
            for start in range(0, len(sources), size):
                index = order[start : start + size]
                batch = to_device(self.collate_sources([sources[i] for i in index]), device)
                max_new = model.max_new_tokens(batch, settings["max_decode_len"], settings["decode_len_ratio"])
                if settings["beam_size"] == 1:
                    decoded = model.greedy_decode(batch, max_new)
                else:
                    decoded = model.beam_search(batch, max_new, settings["beam_size"], settings["length_penalty"])
                for i, row in zip(index, decoded.cpu()):
                    outputs[i] = output_ids(row, model.eos_id, model.pad_id)
                bar.update(len(decoded))
        return outputs

    def alignment(self, model, tokenizer, source, output: list[int]) -> dict:
        """Where the decoder looked to emit each output token (and the final [EOS]): the cross-attention, averaged
        over heads and layers, as an (output tokens x input positions) matrix whose rows sum to 1."""
        import torch

        from tasks.training.loop import to_device

        device = next(model.parameters()).device
        emitted = torch.tensor([*output, model.eos_id])
        weights = model.cross_attention(to_device(self.collate_sources([source]), device), emitted[None].to(device))
        return {
            **self.source_record(source, tokenizer),
            "output_tokens": [tokenizer.id_to_token(int(i)) for i in emitted],
            "alignment": [[round(float(v), 5) for v in row] for row in weights[0].cpu()],
        }

    # ---- evaluation ---------------------------------------------------------------------------
    def evaluate(self, evaluation: Evaluation) -> dict[str, float]:
        import matplotlib.pyplot as plt
        import numpy as np

        e = evaluation
        sources = split_sources(e.splits.test)
        inputs, references = self.test_texts(e.data_dir, e.section)
        settings = e.section.eval.decode_settings()
        e.model.to(e.device)
        beam = self.decode(e.model, sources, settings, e.device)
        greedy_score = self.greedy_score(e.model, sources, references, settings, e.tokenizer, e.device)
        val_scores = self.val_scores(e, settings)
        e.model.cpu()
        hypotheses = [e.tokenizer.decode(ids) for ids in beam]
        metrics = self.score(hypotheses, references) | {self.metrics[-1]: greedy_score}
        assert set(metrics) == set(self.metrics), f"{self.name}: score gave {sorted(metrics)}, not {self.metrics}"
        metrics |= val_scores
        for key, value in self.metric_tags(hypotheses, references).items():
            e.client.set_tag(e.run_id, key, value)

        folder = self.outputs_folder
        e.client.log_text(e.run_id, "".join(line + "\n" for line in hypotheses), f"{folder}/test_hypotheses.txt")
        e.client.log_dict(
            e.run_id,
            [
                {"source": inputs[i], "reference": references[i], self.output_field: hypotheses[i]}
                for i in range(min(20, len(inputs)))
            ],
            f"{folder}/samples.json",
        )
        records = []
        for number, index in enumerate(np.linspace(0, len(sources) - 1, e.section.eval.attention_maps).astype(int)):
            record = {
                "test_index": int(index),
                "source": inputs[index],
                "reference": references[index],
                self.output_field: hypotheses[index],
                **self.alignment(e.model, e.tokenizer, sources[index], beam[index]),
            }
            figure = self.alignment_figure(record, sources[index], e.model)
            e.client.log_figure(e.run_id, figure, f"attention/sample_{number:02d}.png")
            plt.close(figure)
            records.append(record)
        e.client.log_dict(e.run_id, records, "attention/attention_maps.json")
        return metrics

    def val_scores(self, e: Evaluation, settings: dict) -> dict[str, float]:
        """The primary metric on the validation split, of beam search and of greedy decoding (``val_metrics``): the
        same decoding as the test split's, on e.model where it is (e.device)."""
        sources, (_, references) = split_sources(e.splits.val), self.split_texts(e.data_dir, e.section, "val")
        beam = self.decode(e.model, sources, settings, e.device)
        primary = self.score([e.tokenizer.decode(ids) for ids in beam], references)[self.primary_metric]
        greedy = self.greedy_score(e.model, sources, references, settings, e.tokenizer, e.device)
        return {self.val_metric: primary, self.compress_metric: greedy}

    def greedy_score(self, model, sources: list, references: list[str], settings: dict, tokenizer, device) -> float:
        """The primary metric of greedy decoding (the kind's last metric, e.g. test_bleu_greedy)."""
        greedy = self.decode(model, sources, settings | {"beam_size": 1}, device)
        return self.score([tokenizer.decode(ids) for ids in greedy], references)[self.primary_metric]

    # ---- compression --------------------------------------------------------------------------
    @property
    def compress_metric(self) -> str:
        """Greedy decoding's primary metric on the validation split (eval_val_bleu_greedy): a fraction of beam
        search's cost, and what the latency times."""
        return val_name(self.metrics[-1])

    def compress_score(self, evaluation: Evaluation) -> float:
        e = evaluation
        _, references = self.split_texts(e.data_dir, e.section, "val")
        settings = e.section.eval.decode_settings()
        return self.greedy_score(e.model, split_sources(e.splits.val), references, settings, e.tokenizer, e.device)

    def timed_call(self, model, inputs, section) -> None:
        """Greedy decoding of the batch, as far as the eval settings let it run."""
        settings = section.eval.decode_settings()
        model.greedy_decode(
            inputs, model.max_new_tokens(inputs, settings["max_decode_len"], settings["decode_len_ratio"])
        )

    # ---- explanation --------------------------------------------------------------------------
    explainer = "tasks.evaluation.explain_sequence:explain_sequence"  # by name: evaluate's code does not include it
    explain_headline = ("gradient_attention", "cross_attention")

    def alignment_evidence(self, index: int, source, target, e: Explanation):
        """The right alignment of test example index (source; target: its reference output ids, [BOS] .. [EOS]), known
        by construction: (T, S) with T = len(target) - 1 rows (the teacher-forced tokens) and one column per source
        unit, 1 where unit s is the evidence of token t and 0 elsewhere (all-zero rows are not scored); or None when
        it is not known."""
        return None

    @abstractmethod
    def viewer_source(self, source, units: int, e: Explanation) -> dict:
        """What the viewer shows of a source of that many units: {"source_tokens": one label per unit}."""

    # ---- serving ------------------------------------------------------------------------------
    def serve(self, model, checkpoint: dict, tokenizer, config: dict, values: list, params=None) -> list[dict]:
        import torch

        from tasks.data.requests import each_row, limits_from

        limits = limits_from(config)
        sources = each_row(values, lambda value: self.request_source(value, checkpoint, tokenizer, limits))
        outputs = self.decode(model, sources, config, torch.device("cpu"))
        return [
            {self.output_field: tokenizer.decode(output), **self.alignment(model, tokenizer, source, output)}
            for source, output in zip(sources, outputs)
        ]
