"""The shipped model zoo: trained weights that load without a download.

``asbsr/zoo/`` holds fp16 weights trained by this project's own ``asbsr.lab.zoo_train``:

* ``stage1-<key>.pt``: E and M of one stage-1 run (shared by every method of that seed);
* ``<method>-<preset>-s<seed>.pt``: one SR module, naming the stage-1 file it was trained on;
* ``MANIFEST.json``: per model its config, seed, stage-1 key, training command, wall time and
  scores, and which model ``asbsr upscale`` uses by default.

``load_model(path)`` also accepts a stage-2 training checkpoint (``stage2-*.pt``), which holds
E, M and the SR module together. ``merge_zoo`` adds the models of a zoo folder trained on another
machine (``python -m asbsr.lab.zoo_train --merge FOLDER``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

import torch

try:  # POSIX file locks let several training processes share one zoo and one work folder
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process at a time
    fcntl = None

from asbsr.checkpoint import (
    FORMAT, CheckpointError, atomic_save, checkpoint_config, load_checkpoint, load_state,
    uses_stage1,
    stage_key,
)
from asbsr.config import CPU_SIZED_PRESETS, Config, to_dict
from asbsr.files import atomic_path, atomic_write_text
from asbsr.models.blind import BlindSR

ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"
MANIFEST = "MANIFEST.json"


def _half(state: dict) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def model_name(method: str, preset: str, seed: int, variant: str | None = None) -> str:
    """``<method>-<preset>-s<seed>``, with ``-<variant>`` when trained on a stage-1 variant."""
    return f"{method}-{preset}-s{seed}" + (f"-{variant}" if variant else "")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Yields True when the lock is held. With ``wait=False`` it yields False at once if another
    process holds it. Where the OS has no ``fcntl`` (Windows) it always yields True: run one
    training process at a time there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        if fcntl is None:
            yield True
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(folder: Path = ZOO_DIR) -> dict:
    """The zoo's manifest (an empty one for a folder without it). A damaged manifest raises
    ``CheckpointError`` naming the file."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return {"format": "asbsr-zoo-v1", "default": None, "stage1": {}, "models": {}}
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is damaged ({error}); restore it (git checkout) or merge the "
                              "zoo again") from None
    if not isinstance(manifest, dict) or not {"models", "stage1"} <= set(manifest):
        raise CheckpointError(f"{path} is not a zoo manifest (no 'models' and 'stage1' lists)")
    return manifest


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_zoo_file(path: str | os.PathLike) -> None:
    """Check a file of a zoo folder against the SHA-256 its manifest records for it (files the
    manifest does not list, or lists without a digest, pass). A mismatch raises ``CheckpointError``:
    a damaged weight file would otherwise load and produce garbage."""
    path = Path(path)
    if not (path.parent / MANIFEST).exists():
        return
    manifest = read_manifest(path.parent)
    for entry in [*manifest["models"].values(), *manifest["stage1"].values()]:
        if entry.get("file") == path.name and entry.get("sha256"):
            if file_sha256(path) != entry["sha256"]:
                raise CheckpointError(f"{path} is damaged: its SHA-256 is not the one {MANIFEST} "
                                      "records (restore it with git checkout, or train it again)")
            return


def check_weights(path: str | os.PathLike) -> dict:
    """Load a zoo file (``verify_zoo_file``, then ``load_checkpoint``) and check that it holds
    weights, all finite; returns its contents. Anything else raises ``CheckpointError``."""
    data = load_zoo_checkpoint(path)
    states = data.get("models")
    if not isinstance(states, dict) or not states:
        raise CheckpointError(f"{path} holds no weights ('models' is missing or empty)")
    check_finite(states, path)
    return data


def check_finite(states: dict, path) -> None:
    """``CheckpointError`` naming the first tensor of ``{part: {name: tensor}}`` that holds a NaN or
    an infinity (a file that loads but would produce garbage)."""
    for part, state in states.items():
        for name, tensor in state.items():
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"{path} holds NaN or infinite weights ({part}: {name})")


def record_digests(folder: Path = ZOO_DIR) -> list[str]:
    """Record the SHA-256 of every file the manifest lists without one, after ``check_weights``
    has loaded it; returns the files recorded."""
    manifest = read_manifest(folder)
    missing = {entry["file"] for entry in [*manifest["models"].values(), *manifest["stage1"].values()]
               if not entry.get("sha256")}
    digests = {}
    for file in sorted(missing):
        check_weights(Path(folder) / file)
        digests[file] = file_sha256(Path(folder) / file)

    def record(manifest):
        for entry in [*manifest["models"].values(), *manifest["stage1"].values()]:
            if entry["file"] in digests and not entry.get("sha256"):
                entry["sha256"] = digests[entry["file"]]

    update_manifest(record, folder)
    return sorted(digests)


def load_zoo_checkpoint(path: str | os.PathLike) -> dict:
    """``load_checkpoint`` of a zoo file after ``verify_zoo_file``."""
    verify_zoo_file(path)
    return load_checkpoint(path)


def write_manifest(manifest: dict, folder: Path = ZOO_DIR) -> None:
    atomic_write_text(Path(folder) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def update_manifest(change: Callable[[dict], None], folder: Path = ZOO_DIR) -> dict:
    """Read the manifest afresh, apply ``change`` to it and write it back, all under a file lock,
    so that processes training into the same zoo never drop each other's entries."""
    with file_lock(Path(folder) / ".MANIFEST.lock"):
        manifest = read_manifest(folder)
        change(manifest)
        write_manifest(manifest, folder)
    return manifest


def choose_default(manifest: dict) -> None:
    """``asbsr upscale``'s defaults: ``default``, the "ours" model (paper stage 1) with the best
    x4 PSNR, and ``default_cpu``, the best of those sized for a CPU (used when running on one).

    Scores measured on other validation photos than the zoo's reference (``val_digest`` differs
    from ``reference_val_digest``) are not compared with the rest while any model has scores on
    the reference photos."""
    ours = [n for n, e in manifest["models"].items() if e.get("method") == "ours" and not e.get("variant")]
    current = [n for n in ours if manifest["models"][n].get("val_digest") == manifest.get("reference_val_digest")]
    ours = current or ours
    best = lambda names: max(names, key=lambda n: manifest["models"][n]["scores"]["x4"]["psnr"])
    if ours:
        manifest["default"] = best(ours)
    small = [n for n in ours if manifest["models"][n]["preset"] in CPU_SIZED_PRESETS]
    if small:
        manifest["default_cpu"] = best(small)


def merge_zoo(source: str | os.PathLike, target: Path = ZOO_DIR) -> list[str]:
    """Add the stage-1 runs and models of the zoo folder ``source`` (trained elsewhere, e.g. on a
    GPU machine) to ``target``; returns the names added.

    Entries ``target`` holds already with the same key are left alone. A model name that
    ``target`` holds with another key (another config under the same name) raises ``ValueError``
    before anything is copied, as does a model whose stage-1 file is in neither zoo. Files are
    copied first, each atomically, and the manifest is updated last, under its lock, so an
    interrupted merge leaves ``target`` as it was (at most some unlisted files).

    Every incoming file is checked before anything is copied: against the SHA-256 its manifest
    records, and by loading it (a damaged or truncated file, or NaN weights, raise
    ``ValueError``). The merged entries record each file's SHA-256, which ``load_model`` checks."""
    source, target = Path(source), Path(target)
    if not (source / MANIFEST).is_file():
        raise ValueError(f"no zoo at {source}: it has no {MANIFEST}")
    incoming, present = read_manifest(source), read_manifest(target)
    stage1 = {k: e for k, e in incoming["stage1"].items() if k not in present["stage1"]}
    models = {}
    for name, entry in incoming["models"].items():
        held = present["models"].get(name)
        if held and held["key"] != entry["key"]:
            raise ValueError(f"{name}: {target} holds it with key {held['key']}, {source} with "
                             f"{entry['key']} (another config under the same name); not merged")
        if entry["stage1"] and entry["stage1"] not in stage1 and entry["stage1"] not in present["stage1"]:
            raise ValueError(f"{name}: its stage-1 run {entry['stage1']} is in neither zoo")
        if not held:
            models[name] = entry
    for entry in [*stage1.values(), *models.values()]:
        if not (source / entry["file"]).is_file():
            raise ValueError(f"{source / entry['file']} is listed in {source / MANIFEST} but missing")
    digests = {}
    for entry in [*stage1.values(), *models.values()]:
        try:
            check_weights(source / entry["file"])
        except CheckpointError as error:
            raise ValueError(f"not merged: {error}") from None
        digests[entry["file"]] = file_sha256(source / entry["file"])
    for entry in [*stage1.values(), *models.values()]:
        with atomic_path(target / entry["file"]) as temporary:
            shutil.copyfile(source / entry["file"], temporary)
            if file_sha256(temporary) != digests[entry["file"]]:
                raise ValueError(f"{entry['file']} changed while it was copied; not merged")
        entry["sha256"] = digests[entry["file"]]

    def record(manifest):
        manifest["stage1"].update(stage1)
        manifest["models"].update(models)
        for name, scores in incoming.get("reference", {}).items():
            manifest.setdefault("reference", {}).setdefault(name, scores)
        choose_default(manifest)

    update_manifest(record, target)
    return [entry["file"] for entry in stage1.values()] + list(models)


def export_stage1(result, folder: Path = ZOO_DIR) -> str:
    """Write a stage-1 result -- E and M (fp16) and the training history -- as
    ``stage1-<key>.pt``; returns the file name.

    SimSiam's projector and predictor are left out (28 % of the file at width 256): nothing
    after stage 1 reads them, and a stage 1 is continued from its training checkpoint, which
    keeps them. Zoo files written before hold them under ``"simsiam"``; both load."""
    key = stage_key(result.config, 1)
    name = f"stage1-{key}.pt"
    atomic_save({"format": FORMAT, "kind": "zoo-stage1", "key": key, "config": to_dict(result.config),
                 "history": result.history,
                 "models": {"encoder": _half(result.encoder.state_dict()),
                            "estimator": _half(result.estimator.state_dict())}}, Path(folder) / name)
    return name


def export_model(config: Config, model: BlindSR, method: str, folder: Path = ZOO_DIR,
                 variant: str | None = None) -> str:
    """Write the SR module (fp16) as ``<method>-<preset>-s<seed>[-<variant>].pt``; E and M must
    have been exported with ``export_stage1``, unless the model does not use them
    (``checkpoint.uses_stage1``; its ``stage1_file`` is then ``None``). Returns the file name."""
    name = model_name(method, config.preset, config.seed, variant) + ".pt"
    atomic_save({"format": FORMAT, "kind": "zoo-model", "method": method,
                 "config": to_dict(config), "key": stage_key(config, 2),
                 "stage1_file": f"stage1-{stage_key(config, 1)}.pt" if uses_stage1(config) else None,
                 "models": {"sr": _half(model.sr.state_dict())}}, Path(folder) / name)
    return name


def load_encoder(states: dict, encoder, simsiam) -> bool:
    """Load E from whichever form ``states`` holds it in: inside its SimSiam heads (training
    checkpoints, zoo files written before the heads were left out) or bare (zoo stage-1 files).
    Returns False when ``states`` holds no E."""
    if "simsiam" in states:
        load_state(simsiam, states["simsiam"], "implicit predictor E and its SimSiam heads")
    elif "encoder" in states:
        load_state(encoder, states["encoder"], "implicit predictor E")
    else:
        return False
    return True


def _build(config: Config, states: dict) -> BlindSR:
    from asbsr.train import build_blind_sr, build_stage1

    encoder, simsiam, estimator = build_stage1(config)
    if not load_encoder(states, encoder, simsiam) and uses_stage1(config):
        raise CheckpointError("the model uses E and M, but no stage-1 weights came with it")
    if "estimator" in states:
        load_state(estimator, states["estimator"], "kernel estimator M")
    # a model that does not use stage 1 (LTE, LIIF, ...) keeps E and M as built: never read
    model = build_blind_sr(config, encoder, estimator)
    load_state(model.sr, states["sr"], "SR module")
    return model.float().eval()


def load_model(path: str | os.PathLike, device=None) -> tuple[BlindSR, Config]:
    """A ready-to-use ``BlindSR`` (eval mode) and its config from a zoo file or a stage-2
    checkpoint. A file of another kind, or weights that do not fit the config stored with them,
    raise ``CheckpointError`` with a one-line reason."""
    path = Path(path)
    data = load_zoo_checkpoint(path)
    config = checkpoint_config(data)
    kind = data.get("kind", f"stage{data.get('stage')}")
    try:
        if kind == "zoo-model":
            states = {"sr": data["models"]["sr"]}
            if data.get("stage1_file"):
                states.update(load_zoo_checkpoint(path.parent / data["stage1_file"])["models"])
        elif kind == "stage2":
            if data["step"] < data["steps"]:
                print(f"note: {path.name} is a partial checkpoint ({data['step']} of {data['steps']} "
                      "steps)", file=sys.stderr)
            states = data["models"]
        else:
            raise CheckpointError(f"{path} holds {kind!r}, not an SR model (use a zoo model or a "
                                  f"stage-2 checkpoint)")
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path} is incomplete: it has no {error} entry where an asbsr "
                              f"{kind} file has one") from None
    check_finite(states, path)
    model = _build(config, states)
    return model.to(device or "cpu"), config


def default_name(device_type: str = "cuda", folder: Path = ZOO_DIR) -> str | None:
    """The zoo's default model for a device: on a CPU the best CPU-sized one (``default_cpu``),
    elsewhere the best overall (``default``)."""
    manifest = read_manifest(folder)
    return (device_type == "cpu" and manifest.get("default_cpu")) or manifest.get("default")


def model_path(name: str, folder: Path = ZOO_DIR) -> Path:
    """The file of the zoo model ``name``; ``KeyError`` naming the models held if unknown."""
    models = read_manifest(folder)["models"]
    if name not in models:
        raise KeyError(f"no model {name!r} in the zoo; it holds: {', '.join(sorted(models)) or 'nothing'}")
    return Path(folder) / models[name]["file"]


def default_model_path(device_type: str = "cuda", folder: Path = ZOO_DIR) -> Path | None:
    name = default_name(device_type, folder)
    return model_path(name, folder) if name else None


def find_stage1(config: Config, folder: Path = ZOO_DIR) -> Path | None:
    """The zoo's stage-1 file trained with exactly this config's stage-1 sections, if any."""
    entry = read_manifest(folder)["stage1"].get(stage_key(config, 1))
    return Path(folder) / entry["file"] if entry else None


def find_model(config: Config, folder: Path = ZOO_DIR) -> Path | None:
    """The zoo's SR model trained with exactly this config (method already applied), if any."""
    key = stage_key(config, 2)
    for entry in read_manifest(folder)["models"].values():
        if entry["key"] == key:
            return Path(folder) / entry["file"]
    return None


def obtain_stage1(config: Config, folder: str | os.PathLike, train: bool = False, device=None,
                  progress: bool = True, zoo: Path = ZOO_DIR):
    """Stage 1 for ``config``: from the zoo when it holds a run of exactly this stage-1 config
    and ``train`` is false; otherwise trained -- or loaded, or resumed -- under ``folder``.

    Returns a ``train.Stage1Result`` whose ``status`` says in one line which it was.
    """
    from asbsr.train import Stage1Result, build_stage1, train_stage1

    path = None if train else find_stage1(config, zoo)
    if path is None:
        return train_stage1(config, folder, device=device, progress=progress)
    verify_zoo_file(path)
    data = load_checkpoint(path, map_location=device or "cpu")
    encoder, simsiam, estimator = build_stage1(config)
    # a bare E leaves the SimSiam heads as built: nothing after stage 1 reads them
    if not load_encoder(data["models"], encoder, simsiam):
        raise CheckpointError(f"{path} holds no implicit predictor E")
    load_state(estimator, data["models"]["estimator"], "kernel estimator M")
    simsiam.float().eval(), estimator.float().eval()
    device = device or "cpu"
    return Stage1Result(config, encoder.to(device), simsiam.to(device), estimator.to(device),
                        data.get("history", {}), path, f"loaded zoo stage 1 {path.name}")


def obtain_model(config: Config, method: str, folder: str | os.PathLike, train: bool = False,
                 device=None, progress: bool = True, stage1=None):
    """A trained ``BlindSR`` for ``method`` (a name of ``config.METHODS``) and a one-line status.

    From the zoo when it holds a model of exactly this config and ``train`` is false; otherwise
    stage 1 and stage 2 are trained (or loaded, or resumed) under ``folder``.
    Returns ``(model, config, history, status)``.
    """
    from asbsr.config import method_config
    from asbsr.train import train_stage2

    wanted = method_config(config, method)
    path = None if train else find_model(wanted)
    if path is not None:
        model, _ = load_model(path, device=device)
        history = read_manifest()["models"][path.stem].get("history", {})
        return model, wanted, history, f"loaded zoo model {path.name}"
    stage1 = stage1 or obtain_stage1(config, folder, train=train, device=device, progress=progress)
    result = train_stage2(wanted, stage1, folder, device=device, progress=progress)
    return result.model, wanted, result.history, result.status
