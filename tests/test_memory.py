"""``asbsr.memory.keep_freed_memory``: glibc keeps freed memory, so a repeated allocation pattern
stops page-faulting; it can be switched off; elsewhere it does nothing."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

import asbsr.memory as memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Four rounds of allocating (and writing) eight 32 MiB tensors, then freeing them; the page
# faults of each round. Faults are counted by the kernel, not timed.
ROUNDS = """
import json, resource, torch
from asbsr.memory import keep_freed_memory
applied = keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for _ in range(4):
    before = faults()
    tensors = [torch.empty(8 * 2**20).fill_(1.0) for _ in range(8)]
    del tensors
    counts.append(faults() - before)
print(json.dumps({"applied": applied, "faults": counts}))
"""
PAGES = 8 * 8 * 2**20 * 4 // 4096  # pages written per round


def run_rounds(setting: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop(memory.ENVIRONMENT, None)
    if setting is not None:
        env[memory.ENVIRONMENT] = setting
    done = subprocess.run([sys.executable, "-c", ROUNDS], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's")
def test_freed_memory_is_reused_and_the_setting_can_be_switched_off():
    kept = run_rounds(None)
    assert kept["applied"] is True
    # the first round takes its pages from the kernel; later rounds reuse them
    assert kept["faults"][0] > 0.9 * PAGES
    assert max(kept["faults"][2:]) < 0.25 * PAGES
    default = run_rounds("0")
    assert default["applied"] is False
    # glibc's defaults hand each 32 MiB block back to the kernel on free: every round faults
    assert min(default["faults"]) > 0.9 * PAGES


def test_off_where_the_c_library_is_not_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("", ""))
    assert memory.keep_freed_memory() is False
    assert memory.keep_freed_memory() is False  # remembered


def test_environment_switches_it_off(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setenv(memory.ENVIRONMENT, "off")
    assert memory.keep_freed_memory() is False
