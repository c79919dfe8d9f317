"""Dataset entry for UI-JEPA (issue 20): generated UI activity clips (`envs/ui.py`), with intent labels and sentences.

Yields `video` [3, T, H, W], `intent` (template class), `intent_group` (0 seen, 1 zero-shot combination, 2 few-shot
template, 3 unseen template), `intent_tokens` (<bos> sentence <eos> <pad>..., words of `envs.ui.vocabulary()`) and
`intent_slots` (slot-value token ids, <pad> where a template has fewer): the `intent_decoding` evaluation reads them.
"""
from __future__ import annotations

import numpy as np
import torch

from envs import ui
from envs.clips import VideoClips
from orchestrator.datasets import DataError, data_node, generator_config, root_path
from orchestrator.entries import DatasetEntry
from variants.base import DataSpec

UIData = data_node("ui_activity", ui.UIConfig)
GROUP_CLASSES = len(ui.GROUPS)


def _config(cfg) -> ui.UIConfig:
    check_ui(cfg)
    return generator_config(ui.UIConfig, cfg)


def check_ui(cfg) -> None:
    """Unknown templates, overlapping splits and sizes the generator cannot use, as a user error naming the key."""
    try:
        ui.check(cfg)
    except ui.UIError as err:
        raise DataError(str(err).removeprefix("error: ")) from None


class UIClips(VideoClips):
    """VideoClips plus the per-clip sentence and slot token arrays."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        super().__init__(arrays, {"intent": len(ui.TEMPLATES), "intent_group": GROUP_CLASSES})
        self._tokens = {k: np.asarray(arrays[k], dtype=np.int64) for k in ("intent_tokens", "intent_slots")}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(index)
        item.update({k: torch.from_numpy(v[index]) for k, v in self._tokens.items()})
        return item


def prepare_ui(cfg) -> str:
    return str(ui.ensure_ui(_config(cfg), root_path(cfg)))


def load_ui(cfg, split: str) -> UIClips:
    return UIClips(ui.load_ui(ui.ensure_ui(_config(cfg), root_path(cfg)), split))


def ui_spec(cfg) -> DataSpec:
    return DataSpec(kind="video", frames=cfg.frames, size=cfg.size, channels=3, num_classes={"intent": len(ui.TEMPLATES)},
                    token_targets={"intent_tokens": len(ui.vocabulary())})


def ui_entries() -> list[DatasetEntry]:
    return [DatasetEntry("ui_activity", UIData, f"generated phone-UI activity clips: {len(ui.TEMPLATES)} intent templates with "
                         "slots, scripted taps/scrolls/typing; intent class, sentence, zero-shot and few-shot splits (UI-JEPA)",
                         prepare_ui, ui_spec, load_ui, check_ui)]
