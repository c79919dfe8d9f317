"""Intent understanding from frozen clip tokens (UI-JEPA's second stage, issue 20): an intent classification
probe and an intent decoder, scored per split group of the `ui_activity` data.

* `intent_acc_<group>`: the probe (attentive or linear, `eval.probe`) fitted on the train clips (seen
  templates plus `data.few_shot` clips per few-shot template), accuracy on the val clips of the seen
  templates (`seen`), of held-out slot combinations (`zero_shot`) and of the few-shot templates (`few_shot`).
* `intent_f1_<group>`, `intent_slot_exact_<group>`, `intent_exact_<group>`: `variants.ui_jepa.IntentDecoder`
  trained on the train clips' sentences (teacher forcing, `eval.epochs`), greedy-decoded on val; token-level
  F1 (bag of words, SQuAD-style), every reference slot value present in order, whole sentence equal. Also on
  `unseen_template` (templates never trained on: a decoder built from scratch is expected to score low).
Probe-style, so the host also scores it on a random-init encoder (no pretraining) and on raw pixels.
"""
from __future__ import annotations

from collections import Counter

import torch

from envs import ui
from orchestrator.evaluate.base import Evaluation, Features
from variants.nn.probes import Probe, _fit, _standardize
from variants.ui_jepa import IntentDecoder

KEYS = ("intent", "intent_group", "intent_tokens", "intent_slots")
CLASSIFIED = ("seen", "zero_shot", "few_shot")  # groups whose template the probe can have seen


def token_f1(predicted: list[str], reference: list[str]) -> float:
    """Bag-of-words F1 between two word lists (1.0 when both are empty)."""
    if not predicted or not reference:
        return float(predicted == reference)
    common = sum((Counter(predicted) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def slots_match(predicted: list[str], slots: list[str]) -> bool:
    """Every reference slot value appears in the predicted words, in the reference's order."""
    rest = iter(predicted)
    return all(any(word == slot for word in rest) for slot in slots)


def sentence_scores(generated, references, slots, vocab: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Per-sentence F1, slot match and exact match of generated id rows against reference id rows."""
    f1, slot, exact = [], [], []
    for gen, ref, sl in zip(generated.tolist(), references.tolist(), slots.tolist()):
        g, r = ui.decode(gen[1:], vocab), ui.decode(ref[1:], vocab)
        s = [vocab[i] for i in sl if i != ui.PAD]
        f1.append(token_f1(g, r)), slot.append(float(slots_match(g, s))), exact.append(float(g == r))
    return {"f1": torch.tensor(f1), "slot_exact": torch.tensor(slot), "exact": torch.tensor(exact)}


class IntentDecoding(Evaluation):
    name = "intent_decoding"

    def chosen_for(self, spec, host: str) -> bool:
        return "intent_tokens" in spec.token_targets and "intent" in spec.num_classes

    def targets(self, spec) -> list[str]:
        return list(KEYS)

    def score(self, train: Features, val: Features, spec, cfg) -> dict[str, float]:
        torch.manual_seed(int(cfg.seed))
        x_train, x_val = _standardize(train.tokens, val.tokens, (0, 1))
        groups = val.targets["intent_group"]
        out = {}
        with torch.enable_grad():
            predicted = self._classify(x_train, train.targets["intent"], x_val, spec.num_classes["intent"], cfg)
            generated = self._decode(x_train, train.targets["intent_tokens"], x_val, spec.token_targets["intent_tokens"], cfg)
        correct = (predicted == val.targets["intent"]).float()
        scores = sentence_scores(generated, val.targets["intent_tokens"], val.targets["intent_slots"], ui.vocabulary())
        for g, group in enumerate(ui.GROUPS):
            rows = groups == g
            if not rows.any():
                continue
            if group in CLASSIFIED:
                out[f"intent_acc_{group}"] = correct[rows].mean().item()
            for metric, values in scores.items():
                out[f"intent_{metric}_{group}"] = values[rows].mean().item()
        return out

    def _classify(self, x_train, labels, x_val, classes: int, cfg) -> torch.Tensor:
        probe = Probe(x_train.size(-1), {"intent": classes}, str(cfg.eval.probe)).to(x_train.device)
        _fit(probe, len(x_train), lambda idx: torch.nn.functional.cross_entropy(probe(x_train[idx])["intent"], labels[idx]),
             int(cfg.eval.epochs), float(cfg.eval.lr), 64, int(cfg.seed), x_train.device)
        with torch.no_grad():
            return probe(x_val)["intent"].argmax(-1)

    def _decode(self, x_train, sentences, x_val, vocab_size: int, cfg) -> torch.Tensor:
        decoder = IntentDecoder(x_train.size(-1), vocab_size, sentences.size(1)).to(x_train.device)
        _fit(decoder, len(x_train), lambda idx: decoder.loss(x_train[idx], sentences[idx]),
             int(cfg.eval.epochs), float(cfg.eval.lr), 64, int(cfg.seed), x_train.device)
        return torch.cat([decoder.generate(x_val[i:i + 256]) for i in range(0, len(x_val), 256)])
