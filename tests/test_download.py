"""``asbsr.lab.download`` against a local HTTP server that honours ``Range`` and can misbehave.

The server (127.0.0.1, a free port, a thread) serves small zips of tiny PNGs made here. Its
misbehaviours are switched per test: drop the connection after N bytes, ignore ``Range`` (answer
200), serve altered bytes. Every request it sees is recorded with its ``Range`` header, so the
tests can assert what the client asked for, and that a verified file costs no request at all.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from asbsr.lab import download as dl


def png_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2017, 2, 14, 0, 0, 0)), data)
    return buffer.getvalue()


TRAIN_IMAGES = {f"DIV2K_train_HR/{i:04d}.png": png_bytes(i) for i in range(1, 4)}
VALID_IMAGES = {f"DIV2K_valid_HR/{i:04d}.png": png_bytes(i) for i in range(801, 803)}
TRAIN_ZIP = make_zip({"DIV2K_train_HR/": b"", **TRAIN_IMAGES})
VALID_ZIP = make_zip(VALID_IMAGES)


def archive_for(data: bytes, name: str, folder: str, images: int, sha256: str | None = None):
    return dl.Archive(name, folder, len(data), sha256 or hashlib.sha256(data).hexdigest(), images)


TABLE = {"train": archive_for(TRAIN_ZIP, "DIV2K_train_HR.zip", "DIV2K_train_HR", 3),
         "valid": archive_for(VALID_ZIP, "DIV2K_valid_HR.zip", "DIV2K_valid_HR", 2)}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        ranged = self.headers.get("Range")
        server.requests.append((self.path, ranged))
        data = server.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        if server.corrupt:
            data = data[:50] + bytes([data[50] ^ 0xFF]) + data[51:]
        start = int(ranged.split("=")[1].split("-")[0]) if ranged and not server.ignore_range else 0
        if start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = server.drop_after.pop(0) if server.drop_after else None
        self.wfile.write(data[start:] if cut is None else data[start:start + cut])
        self.close_connection = True


@pytest.fixture
def server(monkeypatch):
    """A Range-capable server with ``files`` (name -> bytes), ``requests`` [(path, Range)], and
    the switches ``drop_after`` (bytes sent per request, consumed in order), ``ignore_range``
    and ``corrupt``."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files = {"DIV2K_train_HR.zip": TRAIN_ZIP, "DIV2K_valid_HR.zip": VALID_ZIP}
    httpd.requests, httpd.drop_after, httpd.ignore_range, httpd.corrupt = [], [], False, False
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def fetch_train(server, tmp_path, **kwargs):
    return dl.download(server.url + "DIV2K_train_HR.zip", tmp_path / "train.zip",
                       TABLE["train"].sha256, TABLE["train"].size, **kwargs)


def test_full_download_verifies_and_unpacks_both(server, tmp_path):
    ready = dl.fetch_div2k(tmp_path, base_url=server.url, archives=TABLE)
    assert ready == {"train": tmp_path / "DIV2K_train_HR", "valid": tmp_path / "DIV2K_valid_HR"}
    for name, data in {**TRAIN_IMAGES, **VALID_IMAGES}.items():
        assert (tmp_path / name).read_bytes() == data
    assert (tmp_path / "DIV2K_train_HR.zip").read_bytes() == TRAIN_ZIP
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".unpack-*"))
    assert [ranged for _, ranged in server.requests] == [None, None]


def test_connection_dropped_mid_transfer_resumes_with_range(server, tmp_path):
    server.drop_after = [100]
    dest = fetch_train(server, tmp_path)
    assert dest.read_bytes() == TRAIN_ZIP
    assert [ranged for _, ranged in server.requests] == [None, "bytes=100-"]


def test_interrupted_run_keeps_part_and_next_run_resumes(server, tmp_path):
    server.drop_after = [100]
    with pytest.raises(dl.DownloadError, match="run again to resume"):
        fetch_train(server, tmp_path, attempts=1)
    assert (tmp_path / "train.zip.part").read_bytes() == TRAIN_ZIP[:100]
    assert not (tmp_path / "train.zip").exists()
    assert fetch_train(server, tmp_path).read_bytes() == TRAIN_ZIP
    assert server.requests[-1][1] == "bytes=100-"
    assert not (tmp_path / "train.zip.part").exists()


def test_corrupted_transfer_is_rejected_naming_both_checksums(server, tmp_path):
    server.corrupt = True
    altered = TRAIN_ZIP[:50] + bytes([TRAIN_ZIP[50] ^ 0xFF]) + TRAIN_ZIP[51:]
    got = hashlib.sha256(altered).hexdigest()
    with pytest.raises(dl.VerificationError) as error:
        fetch_train(server, tmp_path)
    assert TABLE["train"].sha256 in str(error.value) and got in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_rejected_naming_both_sizes(server, tmp_path):
    server.files["DIV2K_train_HR.zip"] = TRAIN_ZIP + b"extra"
    with pytest.raises(dl.VerificationError, match=f"expected {len(TRAIN_ZIP)} bytes, "
                                                   f"got {len(TRAIN_ZIP) + 5}"):
        fetch_train(server, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    (tmp_path / "train.zip.part").write_bytes(b"x" * 100)  # appended to, this would corrupt it
    server.ignore_range = True
    assert fetch_train(server, tmp_path).read_bytes() == TRAIN_ZIP
    assert server.requests == [("/DIV2K_train_HR.zip", "bytes=100-")]


def test_complete_part_answered_416_is_verified_and_kept(server, tmp_path):
    (tmp_path / "train.zip.part").write_bytes(TRAIN_ZIP)
    assert fetch_train(server, tmp_path).read_bytes() == TRAIN_ZIP
    assert server.requests == [("/DIV2K_train_HR.zip", f"bytes={len(TRAIN_ZIP)}-")]


def test_verified_file_makes_no_request_and_a_wrong_one_is_replaced(server, tmp_path):
    (tmp_path / "train.zip").write_bytes(TRAIN_ZIP)
    fetch_train(server, tmp_path)
    assert server.requests == []
    (tmp_path / "train.zip").write_bytes(b"not the archive")
    assert fetch_train(server, tmp_path).read_bytes() == TRAIN_ZIP
    assert len(server.requests) == 1


@pytest.mark.parametrize("name", ["../evil.png", "/tmp/evil.png", "a/../../evil.png",
                                  "a\\..\\..\\evil.png", "C:/evil.png"])
def test_unsafe_zip_members_are_refused(tmp_path, name):
    zip_path = tmp_path / "bad.zip"
    zip_path.write_bytes(make_zip({"ok/0001.png": png_bytes(0), name: b"payload"}))
    with pytest.raises(dl.UnsafeArchiveError, match="refusing member"):
        dl.unpack(zip_path, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.png").exists()


def test_unpack_skips_when_complete_and_restores_a_missing_image(tmp_path):
    zip_path = tmp_path / "train.zip"
    zip_path.write_bytes(TRAIN_ZIP)
    images = dl.unpack(zip_path, tmp_path) / "DIV2K_train_HR"
    inode = images.stat().st_ino
    dl.unpack(zip_path, tmp_path)
    assert images.stat().st_ino == inode  # complete: left alone
    (images / "0002.png").unlink()
    dl.unpack(zip_path, tmp_path)
    assert images.stat().st_ino != inode  # replaced by a whole new folder
    assert sorted(p.name for p in images.iterdir()) == ["0001.png", "0002.png", "0003.png"]
    assert (images / "0002.png").read_bytes() == TRAIN_IMAGES["DIV2K_train_HR/0002.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIV2K_train_HR", "train.zip"]


def test_cli_prints_the_train_data_option(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dl, "DIV2K", TABLE)
    assert dl.main(["div2k", str(tmp_path), "--base-url", server.url]) == 0
    out = capsys.readouterr().out
    assert f"--train-data {tmp_path / 'DIV2K_train_HR'}\n" in out
    assert f"ASBSR_TRAIN_DATA={tmp_path / 'DIV2K_train_HR'}" in out
    assert f"evaluate on: {tmp_path / 'DIV2K_valid_HR'}" in out


def test_cli_only_valid_fetches_one_archive(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dl, "DIV2K", TABLE)
    assert dl.main(["div2k", str(tmp_path), "--only", "valid", "--base-url", server.url]) == 0
    assert [path for path, _ in server.requests] == ["/DIV2K_valid_HR.zip"]
    assert "--train-data" not in capsys.readouterr().out


def test_cli_bad_checksum_exits_2_with_one_error_line(server, tmp_path, monkeypatch, capsys):
    wrong = "0" * 64
    monkeypatch.setattr(dl, "DIV2K", {**TABLE, "train": TABLE["train"]._replace(sha256=wrong)})
    assert dl.main(["div2k", str(tmp_path), "--base-url", server.url]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert wrong in lines[0] and hashlib.sha256(TRAIN_ZIP).hexdigest() in lines[0]
    assert captured.out == "" and not (tmp_path / "DIV2K_train_HR.zip").exists()


def test_asbsr_data_div2k_is_the_same_command(server, tmp_path, monkeypatch, capsys):
    from asbsr.lab.cli import main as asbsr_main

    monkeypatch.setattr(dl, "DIV2K", TABLE)
    assert asbsr_main(["data", "div2k", str(tmp_path), "--only", "valid", "--base-url", server.url]) == 0
    assert f"evaluate on: {tmp_path / 'DIV2K_valid_HR'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        asbsr_main(["data", "nosuch"])
    assert "usage: asbsr data" in capsys.readouterr().err
