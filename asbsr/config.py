"""Presets and overrides: every size and step count of the method in one place.

Four named presets share one code path and differ only in sizes and step counts:

* ``smoke`` -- seconds per notebook, for CI.
* ``cpu``   -- a learner's 2-core laptop: the whole notebook sequence within 20 minutes.
* ``gpu``   -- the paper's architecture (EDSR-baseline 16x64, LTE width 256, MLP 256x3, local
  ensemble), trained for a few minutes on one GPU (scripts/gpu_train.sh; measured times are in
  the zoo's manifest and the README).
* ``paper`` -- the paper's architecture and the authors' schedule (stage 1 ~27k iterations with
  batch 128, stage 2 ~50k iterations with batch 16).

A configuration is a frozen dataclass tree. ``make_config("cpu", {"stage2.steps": 100})``
returns the ``cpu`` preset with one value replaced; an unknown preset or key raises
``ValueError`` listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

PRESETS = ("smoke", "cpu", "gpu", "paper")
# Presets whose architecture is sized for a CPU: on a CPU the paper-size model (gpu, paper) spends
# 7-10x the time per output pixel (benchmarks/RESULTS.md), minutes instead of seconds for a photo.
CPU_SIZED_PRESETS = ("smoke", "cpu")


@dataclass(frozen=True)
class DataConfig:
    """Where images come from: a named set of ``asbsr.data`` or a folder path."""

    train: str = "train"  # training HR images (DIV2K in the paper)
    val: str = "val"  # held-out photos for validation and Table 2
    eval_sets: tuple[str, ...] = ("val", "classic5")  # Table 1 sets


@dataclass(frozen=True)
class DegradationConfig:
    """The random degradation of Section 4 (Eq. 1, noise-free).

    ``lambda_range`` bounds the two *standard deviations* of the anisotropic Gaussian
    (covariance ``R(theta) diag(l1^2, l2^2) R(theta)^T``), the convention of DASR's code.
    """

    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    lambda_range: tuple[float, float] = (0.2, 4.0)
    theta_range: tuple[float, float] = (0.0, math.pi)
    modes: tuple[str, ...] = ("bicubic", "bilinear", "area")
    scale_range: tuple[float, float] = (1.0, 4.0)
    noise_sigma: float = 0.0  # white Gaussian noise std on [0, 1] images; the paper uses 0
    lr_kernel_size: int = 21  # size of the LR-space kernel k_l of Eq. 4


@dataclass(frozen=True)
class EncoderConfig:
    """Stage-1 networks: implicit predictor E (+ SimSiam heads) and kernel estimator M."""

    input: str = "haar"  # "haar": 9 high-frequency Haar bands (the paper); "rgb": DASR-style
    dim: int = 256  # width of the implicit degradation representation
    # M's target. "lr": k_l of Eq. 4 solved on the 48-pixel patch (the paper's); "hr": k_h (the
    # Fig. 4 study); "lr_gaussian" (the default, a deviation): k_h with both standard deviations
    # divided by s, the LR-space kernel if blur and resampling commuted. Eq. 4 on a 48-pixel patch
    # is too noisy a target for M to learn from (benchmarks/STAGE1.md)
    kernel_target: str = "lr_gaussian"
    # w in L_k = mean(w |k̂ - k|), as the authors' code weighs it (100, and 200 where k > 0; the
    # paper's text gives no weight); 0 trains E with L_cl alone
    kernel_loss_weight: float = 100.0
    kernel_positive_weight: float = 2.0  # w is multiplied by this where k > 0
    # a bias in the projector's last Linear: the authors' has none (it is harmless before BatchNorm)
    projector_bias: bool = False
    # divide E's input by the patch's standard deviation (a deviation, not in the paper): bands
    # that measure the share of the patch's contrast in its finest details, whatever the photo's
    # contrast, so that E cannot tell photos apart by their contrast alone
    normalise: bool = True


@dataclass(frozen=True)
class Stage1Config:
    batch_size: int = 32
    patch_size: int = 48  # LR patch side
    steps: int = 1000
    lr: float = 1e-3  # Adam
    schedule: str = "cosine"  # "cosine" to 0, or "constant" (the authors')
    checkpoint_every: int = 100
    # Eq. 4's k_l is computed on a target_context x target_context LR region around the first
    # patch (0: on the patch itself, as the authors do), its borders tapered over target_taper
    # pixels: the degradation is the same everywhere, and more pixels mean a less noisy target.
    target_context: int = 0
    target_taper: int = 0
    # Eq. 3's positive pair: two crops of one photo under one degradation ("same_photo", the
    # paper's), or crops of two different photos under it ("other_photo", an ablation that
    # leaves E no shared content to match the pair by)
    positive_pair: str = "same_photo"


@dataclass(frozen=True)
class ModelConfig:
    """Stage-2 arbitrary-scale SR module.

    ``head`` picks the implicit neural representation: ``lte`` (the paper's), or one of the
    Table 1 baselines ``liif``, ``metasr``, ``srno``. ``modulation`` conditions EDSR's residual
    blocks on E's representation (Section 3.3); ``deblur`` makes the DCLS-style baseline that
    deconvolves the LR input with M's kernel estimate before the SR module.
    """

    head: str = "lte"
    n_resblocks: int = 4
    n_feats: int = 32
    width: int = 128  # LTE coefficient/frequency channels (256 in the paper)
    mlp: tuple[int, ...] = (128, 128)  # hidden layers of the decoding MLP
    local_ensemble: bool = False
    modulation: bool = True
    modulation_slope: float = 0.01  # LeakyReLU inside the modulation, the authors' value
    deblur: bool = False


@dataclass(frozen=True)
class Stage2Config:
    batch_size: int = 8
    patch_size: int = 48  # LR patch side
    queries: int = 2304  # sampled HR pixels per patch
    steps: int = 1500
    lr: float = 1e-3  # Adam
    schedule: str = "cosine"  # "cosine" or "step" (halve at 20/40/60/80 %, the authors')
    cycle_weight: float = 0.1  # lambda of Eq. 7; 0 switches the cycle loss off
    checkpoint_every: int = 250


@dataclass(frozen=True)
class EvalConfig:
    scales: tuple[float, ...] = (3.0, 3.6, 4.0)  # Table 1
    degradation_seed: int = 2024  # one fixed random degradation per test image
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds per learned method
    chunk: int = 65536  # HR queries per forward pass at inference
    tile: int = 0  # LR tile side for tiled encoding; 0 encodes the whole image at once
    # What the notebooks measure, sized per preset (the notebooks' parameters override them):
    stage1_probe_patches: int = 1024  # notebook 02: labelled LR patches for the probes of E
    kernel_probe_patches: int = 512  # notebook 03: labelled LR patches for M's errors and PSNRs
    cycle_max_side: int = 0  # notebook 05: long side the validation photos shrink to; 0: full size
    table_max_side: int = 384  # notebook 06: long side the benchmark images shrink to; 0: full size
    table2_draws: int = 2  # notebook 06: degradation draws per validation photo for Table 2
    train_ablation: bool = False  # notebook 06: train the stage-1 ablation when the zoo lacks it


@dataclass(frozen=True)
class Config:
    preset: str = "cpu"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    model: ModelConfig = field(default_factory=ModelConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _preset_values(name: str) -> dict[str, Any]:
    """Dotted-key values that distinguish a preset from the dataclass defaults (``cpu``)."""
    if name == "smoke":
        return {
            "stage1.batch_size": 16, "stage1.patch_size": 32, "stage1.steps": 30,
            "stage1.checkpoint_every": 10, "encoder.dim": 64,
            "model.n_resblocks": 2, "model.n_feats": 16, "model.width": 64, "model.mlp": (64, 64),
            "stage2.batch_size": 8, "stage2.patch_size": 32, "stage2.queries": 1024,
            "stage2.steps": 60, "stage2.checkpoint_every": 20,
            "eval.seeds": (0,), "eval.stage1_probe_patches": 256, "eval.kernel_probe_patches": 128,
            "eval.cycle_max_side": 256, "eval.table_max_side": 96, "eval.train_ablation": True,
        }
    if name == "cpu":
        return {}
    if name == "gpu":
        return {
            "stage1.batch_size": 128, "stage1.steps": 1000, "stage1.checkpoint_every": 500,
            "model.n_resblocks": 16, "model.n_feats": 64, "model.width": 256,
            "model.mlp": (256, 256, 256), "model.local_ensemble": True,
            "stage2.batch_size": 16, "stage2.steps": 3000, "stage2.lr": 2e-4,
            "stage2.checkpoint_every": 1000,
            "eval.chunk": 30000, "eval.table_max_side": 0, "eval.table2_draws": 8,
        }
    if name == "paper":
        return {
            # The authors' stage-1 rate is 0.03; under asbsr's stage-1 recipe it does not learn
            # (benchmarks/STAGE1.md: rho 0.29, -0.09 dB after 300 steps), so 1e-3 is kept.
            "stage1.batch_size": 128, "stage1.steps": 27000,
            "stage1.checkpoint_every": 1000,
            "model.n_resblocks": 16, "model.n_feats": 64, "model.width": 256,
            "model.mlp": (256, 256, 256), "model.local_ensemble": True,
            "stage2.batch_size": 16, "stage2.steps": 50000, "stage2.lr": 1e-4,
            "stage2.schedule": "step", "stage2.checkpoint_every": 2000,
            "eval.chunk": 30000, "eval.table_max_side": 0, "eval.table2_draws": 8,
        }
    raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")


def valid_keys(config: Config | None = None) -> list[str]:
    """All dotted override keys, e.g. ``stage2.steps``."""
    config = config or Config()
    keys = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(value)]
        else:
            keys.append(f.name)
    return keys


def _coerce(value: Any, like: Any, key: str) -> Any:
    """Convert an override to the type of the field it replaces (JSON gives lists for tuples)."""
    if isinstance(like, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise ValueError(f"{key} takes true/false, got {value!r}")
        return value
    if isinstance(like, tuple):
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        item_like = like[0] if like else value[0] if value else 0
        return tuple(_coerce(v, item_like, key) for v in value)
    if isinstance(like, int):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{key} takes an integer, got {value!r}")
        return int(value)
    if isinstance(like, float):
        return float(value)
    if isinstance(like, str):
        return str(value)
    return value


def override(config: Config, overrides: Mapping[str, Any]) -> Config:
    """Return ``config`` with dotted-key values replaced; unknown keys raise ``ValueError``."""
    keys = valid_keys(config)
    for key, value in overrides.items():
        if key not in keys:
            raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(keys)}")
        if "." in key:
            section, name = key.split(".", 1)
            sub = getattr(config, section)
            new = _coerce(value, getattr(sub, name), key)
            config = dataclasses.replace(config, **{section: dataclasses.replace(sub, **{name: new})})
        else:
            config = dataclasses.replace(config, **{key: _coerce(value, getattr(config, key), key)})
    validate(config)
    return config


def make_config(preset: str = "cpu", overrides: Mapping[str, Any] | None = None) -> Config:
    """The named preset with optional dotted-key overrides, e.g. ``{"stage2.steps": 100}``."""
    values = _preset_values(preset)
    config = override(Config(preset=preset), values)
    return override(config, overrides or {})


def validate(config: Config) -> None:
    """Reject values that no code path could use, naming the offending key."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(message)

    need(config.preset in PRESETS, f"preset must be one of {PRESETS}, got {config.preset!r}")
    need(config.encoder.input in ("haar", "rgb"), "encoder.input must be 'haar' or 'rgb'")
    need(config.encoder.kernel_target in ("lr", "hr", "lr_gaussian"),
         "encoder.kernel_target must be 'lr', 'hr' or 'lr_gaussian'")
    need(config.encoder.kernel_loss_weight >= 0 and config.encoder.kernel_positive_weight > 0,
         "encoder.kernel_loss_weight must be >= 0 and encoder.kernel_positive_weight > 0")
    need(config.stage1.target_context == 0 or config.stage1.target_context >= config.stage1.patch_size,
         "stage1.target_context must be 0 or at least stage1.patch_size")
    need(0 <= config.stage1.target_taper, "stage1.target_taper must be >= 0")
    need(config.model.head in ("lte", "liif", "metasr", "srno"),
         "model.head must be one of lte, liif, metasr, srno")
    need(config.stage1.positive_pair in ("same_photo", "other_photo"),
         "stage1.positive_pair must be 'same_photo' or 'other_photo'")
    need(config.stage1.schedule in ("constant", "cosine"), "stage1.schedule must be 'constant' or 'cosine'")
    need(config.stage2.schedule in ("cosine", "step"), "stage2.schedule must be 'cosine' or 'step'")
    need(all(k % 2 == 1 and k >= 1 for k in config.degradation.kernel_sizes),
         "degradation.kernel_sizes must be odd positive integers")
    need(config.degradation.lr_kernel_size % 2 == 1, "degradation.lr_kernel_size must be odd")
    lo, hi = config.degradation.scale_range
    need(1.0 <= lo <= hi and math.isfinite(hi), "degradation.scale_range must satisfy 1 <= lo <= hi")
    need(set(config.degradation.modes) <= {"bicubic", "bilinear", "area"},
         "degradation.modes must be drawn from bicubic, bilinear, area")
    for section in ("stage1", "stage2"):
        s = getattr(config, section)
        need(s.batch_size >= 1 and s.steps >= 0 and s.patch_size >= 8 and s.lr > 0,
             f"{section}: batch_size >= 1, steps >= 0, patch_size >= 8, lr > 0")
        need(s.checkpoint_every >= 1, f"{section}.checkpoint_every must be >= 1")
    need(config.stage1.batch_size >= 2, "stage1.batch_size must be >= 2 (BatchNorm)")
    need(config.stage2.cycle_weight >= 0, "stage2.cycle_weight must be >= 0")
    need(config.stage2.patch_size >= config.degradation.lr_kernel_size,
         "stage2.patch_size must be >= degradation.lr_kernel_size (the cycle blurs with k_l)")
    need(len(config.model.mlp) >= 1, "model.mlp needs at least one hidden layer")
    e = config.eval
    need(e.chunk >= 1 and e.tile >= 0, "eval.chunk must be >= 1 and eval.tile >= 0")
    need(min(e.stage1_probe_patches, e.kernel_probe_patches, e.table2_draws) >= 1,
         "eval.stage1_probe_patches, eval.kernel_probe_patches and eval.table2_draws must be >= 1")
    need(min(e.cycle_max_side, e.table_max_side) >= 0, "eval.*_max_side must be >= 0 (0: full size)")


def to_dict(config: Config) -> dict[str, Any]:
    """A JSON-ready nested dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


# Keys added after checkpoints and zoo models were first written, each with the value that
# reproduces what the code did before the key existed. A stored config that lacks such a key
# was made with that value (``from_dict`` fills it in, so an old model is never reinterpreted
# under a newer default), and a key holding that value is left out of ``config_hash`` (so
# adding a key does not rename every checkpoint made before).
LEGACY_VALUES: dict[str, Any] = {
    "encoder.kernel_positive_weight": 1.0,
    "stage1.target_context": 0,
    "stage1.target_taper": 0,
    "model.modulation_slope": 0.1,
    "encoder.projector_bias": True,
    "encoder.normalise": False,
    "stage1.schedule": "constant",
    "stage1.positive_pair": "same_photo",
}


def from_dict(data: Mapping[str, Any]) -> Config:
    """Inverse of ``to_dict``; unknown keys raise ``ValueError`` (e.g. a checkpoint from a
    newer layout). Keys of ``LEGACY_VALUES`` that ``data`` lacks get their legacy value."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    for key, value in LEGACY_VALUES.items():
        flat.setdefault(key, value)
    preset = flat.pop("preset", "cpu")
    return override(Config(preset=preset), flat)


# Raised whenever a change of code (not of config) makes old weights stale, e.g. an
# initialisation; it is part of every checkpoint key.
WEIGHTS_VERSION = 2


def config_hash(config: Config, sections: tuple[str, ...] | None = None,
                extra: Mapping[str, str] | None = None) -> str:
    """A short stable hash of the whole config, or of the named sections only (and of
    ``WEIGHTS_VERSION`` and of the strings of ``extra``, e.g. a digest of the training photos).

    Checkpoints are keyed by it, so that changing a hyperparameter never reuses a stale model.
    Values that cannot change the weights are left out: a ``LEGACY_VALUES`` key at its legacy
    value, and the modulation's slope when there is no modulation.
    """
    data = to_dict(config)
    for key, value in LEGACY_VALUES.items():
        section, name = key.split(".")
        if data[section][name] == json.loads(json.dumps(value)):
            del data[section][name]
    if not config.model.modulation:  # the slope of a modulation that is not there changes nothing
        data["model"].pop("modulation_slope", None)
    if sections is not None:
        data = {k: data[k] for k in sections}
    data["weights_version"] = WEIGHTS_VERSION
    data.update(extra or {})
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


# The stage-1 recipe under which E reads the blur and M follows it on photos no model trains on
# (benchmarks/STAGE1.md: trial E, cpu size, 1000 steps): the authors' L_k weights, the LR-space
# Gaussian as M's target instead of Eq. 4 on the 48-pixel patch, E's input normalised per patch
# and a cosine schedule. Every preset trains with it (they are the dataclass defaults); the
# benchmarks apply it on top of the legacy values to compare with the recipe before it.
LEARNING_STAGE1: dict[str, Any] = {
    "encoder.kernel_loss_weight": 100.0, "encoder.kernel_positive_weight": 2.0,
    "encoder.kernel_target": "lr_gaussian", "encoder.normalise": True, "stage1.schedule": "cosine",
}


# Which sections determine each stage's weights: stage 1 does not depend on the SR module.
STAGE1_SECTIONS = ("seed", "data", "degradation", "encoder", "stage1")
STAGE2_SECTIONS = STAGE1_SECTIONS + ("model", "stage2")
STAGE1_FREE_SECTIONS = ("seed", "data", "degradation", "model", "stage2")  # SR without E or M


# The methods of Tables 1 and 2, each a set of overrides on one preset. "ours" is the paper's
# full model; the Table 2 ablations switch its modulation (implicit representation) and cycle.
METHODS: dict[str, dict[str, Any]] = {
    "ours": {"model.head": "lte", "model.modulation": True, "model.deblur": False,
             "stage2.cycle_weight": 0.1},
    "lte": {"model.head": "lte", "model.modulation": False, "model.deblur": False,
            "stage2.cycle_weight": 0.0},
    "liif": {"model.head": "liif", "model.modulation": False, "model.deblur": False,
             "stage2.cycle_weight": 0.0},
    "metasr": {"model.head": "metasr", "model.modulation": False, "model.deblur": False,
               "stage2.cycle_weight": 0.0},
    "srno": {"model.head": "srno", "model.modulation": False, "model.deblur": False,
             "stage2.cycle_weight": 0.0},
    "dcls_liif": {"model.head": "liif", "model.modulation": False, "model.deblur": True,
                  "stage2.cycle_weight": 0.0},
    "dcls_lte": {"model.head": "lte", "model.modulation": False, "model.deblur": True,
                 "stage2.cycle_weight": 0.0},
    # Table 2: implicit degradation (modulation) x cycle-consistency.
    "implicit_only": {"model.head": "lte", "model.modulation": True, "model.deblur": False,
                      "stage2.cycle_weight": 0.0},
    "cycle_only": {"model.head": "lte", "model.modulation": False, "model.deblur": False,
                   "stage2.cycle_weight": 0.1},
}
TABLE1_METHODS = ("metasr", "liif", "lte", "srno", "dcls_liif", "dcls_lte", "ours")
TABLE2_METHODS = ("lte", "cycle_only", "implicit_only", "ours")  # neither, cycle, implicit, both


def method_config(config: Config, method: str) -> Config:
    """``config`` with the architecture and loss of a named method of Table 1 or 2."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return override(config, METHODS[method])
