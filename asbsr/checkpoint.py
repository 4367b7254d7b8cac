"""Checkpoints: atomic writes, ``weights_only`` reloads, and one naming rule for reuse.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(path, weights_only=True)`` reads it without unpickling arbitrary objects::

    {"format": "asbsr-v1", "stage": 1 | 2, "config": to_dict(config), "key": "cpu-1a2b3c4d5e",
     "step": int, "steps": int, "models": {name: state_dict}, "optimizer": ..., "scheduler": ...,
     "generator": ByteTensor, "history": {name: [floats]}, "parent": key of the stage-1 run}

Its file name is ``stage{1,2}-{preset}-{hash}.pt`` where the hash covers exactly the config
sections that determine that stage's weights (see ``config.STAGE1_SECTIONS``) and the contents
of the training photos (``data.set_digest``). A checkpoint is reused only when preset and hash
match: a ``smoke`` model is never loaded under ``cpu``, changing a hyperparameter trains anew,
and so does adding, removing or changing a training photo.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from asbsr.config import (
    STAGE1_FREE_SECTIONS, STAGE1_SECTIONS, STAGE2_SECTIONS, Config, config_hash, from_dict,
)
from asbsr.data import set_digest
from asbsr.files import atomic_path

FORMAT = "asbsr-v1"

# The digest of the first data/train (10 photos, long side 1024), on which the zoo's first models
# were trained. Keys made from those photos leave the digest out, as keys did before it was part
# of them; any other training set, today's included, puts its digest in the key.
LEGACY_TRAIN_DIGEST = "a16025929c465d1c"


class CheckpointError(ValueError):
    """A checkpoint that cannot serve the request: unreadable, or made by another config."""


def uses_stage1(config: Config) -> bool:
    """Whether a stage-2 model reads E or M: modulated by E, deblurred with M's kernel, or
    trained with the cycle loss (M's kernel). The others (LTE, LIIF, MetaSR, SRNO) train the
    same weights whatever the stage 1, so their key leaves the stage-1 sections out and a new
    stage 1 does not make them stale."""
    return bool(config.model.modulation or config.model.deblur or config.stage2.cycle_weight > 0)


def stage_key(config: Config, stage: int, train_digest: str | None = None) -> str:
    """``{preset}-{hash}``: the hash of the config sections that determine the stage's weights
    and of the digest of the training photos (left out for the first training set,
    ``LEGACY_TRAIN_DIGEST``). ``train_digest`` names the photos a stored model was trained on
    when they are no longer on disk; by default the digest of ``config.data.train`` is taken."""
    if stage == 1:
        sections = STAGE1_SECTIONS
    else:
        sections = STAGE2_SECTIONS if uses_stage1(config) else STAGE1_FREE_SECTIONS
    try:
        digest = train_digest or set_digest(config.data.train)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot name a checkpoint: the training photos "
                              f"{config.data.train!r} are not readable ({error})") from error
    extra = {} if digest == LEGACY_TRAIN_DIGEST else {"train_digest": digest}
    return f"{config.preset}-{config_hash(config, sections, extra)}"


def checkpoint_path(folder: str | os.PathLike, config: Config, stage: int) -> Path:
    return Path(folder) / f"stage{stage}-{stage_key(config, stage)}.pt"


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (``atomic_path``)."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; anything else is a ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not a zip archive: damaged, "
                              "truncated, or another kind of file)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path} holds Python objects besides tensors and plain values; asbsr "
                              "reads only those and will not load it") from error
    except Exception as error:  # a truncated or damaged archive
        lines = [line for line in str(error).strip().splitlines() if "weights_only" not in line]
        reason = lines[0] if lines else type(error).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated or damaged?): {reason}") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an asbsr checkpoint (format {FORMAT!r} expected)")
    return data


def checkpoint_config(data: dict) -> Config:
    try:
        return from_dict(data["config"])
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"checkpoint config is not valid here: {error}") from error


def load_state(module: torch.nn.Module, state: dict, what: str) -> None:
    """``load_state_dict`` with a message that names the part and says why it does not fit."""
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0:3]
        raise CheckpointError(
            f"the checkpoint's {what} does not fit this architecture "
            f"(a checkpoint of another config?): {' '.join(first)}"
        ) from error
