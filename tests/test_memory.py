"""core/memory.py: freed memory kept in the process, counted in page faults (each process starts fresh)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest
from conftest import ENV, REPO

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# Allocate, touch and free a 64 MB tensor (above glibc's largest mmap threshold) fourteen times; page faults of
# the last nine, after the first five have settled the heap (it takes about three).
PROBE = """
import json, resource, sys
import torch
from core.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "kept" else False
for _ in range(5):
    torch.ones(16 * 2**20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(9):
    torch.ones(16 * 2**20).sum()
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def probe(setting: str, **env: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, setting], cwd=REPO, env={**ENV, **env},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_kept_memory_is_reused_without_faulting_its_pages_in_again():
    default, kept = probe("default"), probe("kept")
    assert kept["applied"]
    pages = 9 * 64 * 2**20 // 4096  # what nine fresh mappings fault in
    assert default["faults"] > pages // 2  # the default maps and unmaps each time
    assert kept["faults"] < pages // 50


def test_a_users_own_malloc_tunables_are_left_alone():
    own = probe("kept", GLIBC_TUNABLES="glibc.malloc.mmap_max=65536")
    assert not own["applied"]
    assert own["faults"] > 9 * 64 * 2**20 // 4096 // 2
