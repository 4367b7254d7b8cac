"""Fetch DIV2K's HR images: a resumable, verified download and a safe, atomic unpack.

The paper trains on DIV2K's 800 training images and reports Table 2 on its 100 validation
images (Agustsson & Timofte, NTIRE 2017). The repository ships small stand-ins instead (see
``asbsr.data``); this module is for users with internet who want the real thing::

    python -m asbsr.lab.download div2k DIR [--only train|valid] [--base-url URL]

It leaves the image folders ``DIR/DIV2K_train_HR`` (0001.png ... 0800.png) and
``DIR/DIV2K_valid_HR`` (0801.png ... 0900.png), and the zips beside them so that a re-run verifies
instead of downloading again (delete them when done). Nothing else in asbsr downloads anything.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shlex
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable, NamedTuple

OFFICIAL = "http://data.vision.ee.ethz.ch/cvl/DIV2K/"


class Archive(NamedTuple):
    """One zip under a base URL: its file name, the folder it unpacks to, its size in bytes, its
    SHA-256, and how many PNG images that folder holds."""
    name: str
    folder: str
    size: int
    sha256: str
    images: int


# Each SHA-256 below is given, identically, by two independent public sources:
#  [1] tensorflow_datasets, tensorflow_datasets/url_checksums/div2k.txt (commit 1054f22d):
#      https://github.com/tensorflow/datasets/blob/master/tensorflow_datasets/url_checksums/div2k.txt
#      (size and SHA-256 of each archive, listed under https://data.vision.ee.ethz.ch/cvl/DIV2K/);
#  [2] Guild AI's guide "Add Guild to a project", pages/docs/guides/add-guild.md (commit 459c8579):
#      https://github.com/guildai/guild.ai/blob/master/pages/docs/guides/add-guild.md
#      (SHA-256 only; it fetches the valid zip from .../DIV2K/validation_release/).
# The sizes are from [1] alone.
DIV2K = {
    "train": Archive("DIV2K_train_HR.zip", "DIV2K_train_HR", 3_530_603_713,  # size: [1]
                     "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",  # [1], [2]
                     800),
    "valid": Archive("DIV2K_valid_HR.zip", "DIV2K_valid_HR", 448_993_893,  # size: [1]
                     "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",  # [1], [2]
                     100),
}


class DownloadError(Exception):
    """A download or unpack that could not finish; the message says what to do."""


class VerificationError(DownloadError):
    """The bytes received are not the expected ones: the message names expected and got."""


class UnsafeArchiveError(DownloadError):
    """A zip member would land outside the folder (absolute path or ``..``)."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _mismatch(path: Path, expected_sha256: str | None, expected_size: int | None) -> str | None:
    """Why ``path`` is not the expected file ("size ..." / "sha256 ..."), or None if it is."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"size expected {expected_size} bytes, got {size}"
    if expected_sha256 is not None:
        got = sha256_of(path)
        if got != expected_sha256.lower():
            return f"sha256 expected {expected_sha256.lower()}, got {got}"
    return None


def _open(url: str, offset: int):
    """The response to GET ``url`` from byte ``offset`` on, or None when the server answers 416
    (Range Not Satisfiable: the partial file already reaches the end, or beyond it)."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return None
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(f"{url}: {getattr(error, 'reason', error)}") from None


def download(url: str, dest, expected_sha256: str | None = None, expected_size: int | None = None,
             chunk: int = 1 << 20, progress: Callable[[int, int | None], None] | None = None,
             attempts: int = 3) -> Path:
    """Download ``url`` to ``dest``, resuming and verifying; return ``dest`` as a Path.

    Bytes go to ``dest + ".part"``. A ``.part`` left by an interrupted run is resumed with
    ``Range: bytes=N-``; a server that answers 200 instead of 206 sends the whole file, which then
    overwrites the ``.part`` from byte 0; a 416 means the ``.part`` may already be complete and
    goes straight to verification. A connection dropped mid-transfer is resumed the same way, up
    to ``attempts`` requests in all; after that the ``.part`` stays for the next call.

    Only once the whole ``.part`` has ``expected_size`` bytes and SHA-256 ``expected_sha256``
    (each checked when given) is it renamed to ``dest``, atomically. On a mismatch the ``.part``
    is deleted and ``VerificationError`` names expected vs got. An existing ``dest`` that passes
    the same checks is returned without any request. ``progress(done, total)`` is called after
    each chunk; ``total`` is None when neither the server nor ``expected_size`` gives it.
    """
    dest = Path(dest)
    if dest.is_file() and _mismatch(dest, expected_sha256, expected_size) is None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        have = part.stat().st_size if part.is_file() else 0
        if expected_size is not None and have > expected_size:
            part.unlink()
            have = 0
        response = _open(url, have)
        if response is None:
            break
        with response:
            if response.status != 206:
                have = 0  # 200: the server ignored Range and sends the whole file
            elif not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                raise DownloadError(f"{url}: asked for bytes {have}-, the server sent "
                                    f"{response.headers.get('Content-Range')!r}")
            length = response.headers.get("Content-Length")
            end = have + int(length) if length is not None else None
            total = end if end is not None else expected_size
            received = have
            try:
                with open(part, "ab" if have else "wb") as stream:
                    while block := response.read(chunk):
                        stream.write(block)
                        received += len(block)
                        if progress:
                            progress(received, total)
                    stream.flush()
                    os.fsync(stream.fileno())
            except (ConnectionError, TimeoutError, http.client.HTTPException):
                pass  # dropped mid-transfer: what reached the .part is resumed from below
        if end is None or received >= end:
            break
        if attempt == attempts:
            raise DownloadError(f"{url}: connection dropped after {received} of {end} bytes; "
                                f"{part} is kept, run again to resume")
    problem = _mismatch(part, expected_sha256, expected_size)
    if problem is not None:
        part.unlink()
        raise VerificationError(f"{dest.name}: {problem}; the partial file was deleted, "
                                f"run again to download it afresh")
    os.replace(part, dest)
    return dest


def unpack(zip_path, folder) -> Path:
    """Extract ``zip_path`` into ``folder`` safely and atomically; return ``folder``.

    Every member is checked first (``UnsafeArchiveError`` on an absolute path or ``..``). If each
    file member already exists under ``folder`` with its size in the zip, nothing is done.
    Otherwise the zip is extracted into a temporary folder beside the target and each of its
    top-level entries is then renamed into ``folder``, replacing an incomplete one of that name:
    DIV2K's zips hold one top-level folder each, so a reader sees the old folder or the whole new
    one, never half of it.
    """
    folder = Path(folder)
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        for name in (info.filename for info in members):
            windows = PureWindowsPath(name)
            if (PurePosixPath(name).is_absolute() or windows.drive or windows.root
                    or ".." in PurePosixPath(name.replace("\\", "/")).parts):
                raise UnsafeArchiveError(f"{zip_path}: refusing member {name!r} "
                                         f"(absolute path or '..')")
        files = [info for info in members if not info.is_dir()]
        if all((folder / info.filename).is_file()
               and (folder / info.filename).stat().st_size == info.file_size for info in files):
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".unpack-"))
        try:
            archive.extractall(staging, members)
            for entry in sorted(staging.iterdir()):
                target = folder / entry.name
                if target.exists() or target.is_symlink():
                    os.rename(target, staging / (".old-" + entry.name))  # deleted below
                os.rename(entry, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def fetch_div2k(folder, which=("train", "valid"), base_url: str = OFFICIAL,
                archives: dict[str, Archive] | None = None, progress=None) -> dict[str, Path]:
    """Download, verify and unpack the DIV2K HR archives named in ``which``.

    Returns ``{"train": folder/DIV2K_train_HR, "valid": folder/DIV2K_valid_HR}`` (those asked
    for). ``archives`` defaults to ``DIV2K``; ``base_url`` and ``archives`` let a test serve its
    own small zips from 127.0.0.1. A re-run finishes a partial download and skips what is done.
    """
    folder = Path(folder)
    archives = DIV2K if archives is None else archives
    unknown = sorted(set(which) - set(archives))
    if unknown:
        raise DownloadError(f"unknown part(s) {unknown}; choose from {sorted(archives)}")
    ready = {}
    for name in which:
        archive = archives[name]
        url = base_url.rstrip("/") + "/" + archive.name
        zip_path = download(url, folder / archive.name, archive.sha256, archive.size,
                            progress=progress)
        unpack(zip_path, folder)
        images = folder / archive.folder
        count = len(list(images.glob("*.png"))) if images.is_dir() else 0
        if count != archive.images:
            raise DownloadError(f"{images}: expected {archive.images} PNG images, found {count}")
        ready[name] = images
    return ready


def _show_progress(done: int, total: int | None) -> None:
    mib = 1 << 20
    of = f" / {total / mib:.0f} MiB ({100 * done / total:.0f}%)" if total else " MiB"
    print(f"\r  {done / mib:.0f}{of}", end="", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None, prog: str = "python -m asbsr.lab.download") -> int:
    """The command line: ``div2k DIR [--only train|valid] [--base-url URL]``; 0, or 2 with one
    ``error:`` line on stderr."""
    parser = argparse.ArgumentParser(prog=prog, description="Download verified datasets.")
    sets = parser.add_subparsers(dest="dataset", required=True)
    div2k = sets.add_parser("div2k", help="DIV2K HR train (800) and valid (100) images")
    div2k.add_argument("folder", type=Path, help="where the zips and image folders go")
    div2k.add_argument("--only", choices=("train", "valid"), help="just one of the two archives")
    div2k.add_argument("--base-url", default=OFFICIAL, help=f"mirror to use (default {OFFICIAL})")
    args = parser.parse_args(argv)
    which = (args.only,) if args.only else ("train", "valid")
    progress = _show_progress if sys.stderr.isatty() else None
    try:
        ready = fetch_div2k(args.folder.resolve(), which, args.base_url, DIV2K, progress)
    except (DownloadError, OSError, zipfile.BadZipFile, KeyboardInterrupt) as error:
        why = error if str(error) else "interrupted; run the same command again to resume"
        print(("\n" if progress else "") + f"error: {why}", file=sys.stderr)
        return 2
    if progress:
        print(file=sys.stderr)  # end the progress line
    for part, images in ready.items():
        print(f"{part}: {images}")
    if "train" in ready:
        train = shlex.quote(str(ready["train"]))  # the lines are meant to be pasted into a shell
        print(f"train with:  python3 run.py pipeline --train --train-data {train}")
        print(f"  (one notebook: ASBSR_TRAIN_DATA={train})")
    if "valid" in ready:
        print(f"evaluate on: {ready['valid']}  (DIV2K's validation set, the paper's Table 2 "
              f"images; e.g. notebook 06's EVAL_SETS = [\"{ready['valid']}\"])")
    return 0


if __name__ == "__main__":
    sys.exit(main())
