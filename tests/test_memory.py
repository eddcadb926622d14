"""core/memory.py: freed memory kept in the process, counted in page faults (each process starts fresh)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest
from conftest import ENV, REPO

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# Allocate, touch and free a 64 MB tensor (above glibc's largest mmap threshold) 30 times and count each time's
# page faults. By default every time maps fresh pages. Kept, the heap grows to a few such blocks and then reuses
# them, except now and then when a small allocation has split one (where it lands varies from run to run).
TIMES = 30
PROBE = f"""
import json, resource, sys
import torch
from core.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "kept" else False
faults = []
for _ in range({TIMES}):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 2**20).sum()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({{"applied": applied, "faults": faults}}))
"""
MAPPING = 64 * 2**20 // 4096  # the page faults of one fresh 64 MB mapping


def faulting_times(faults: list[int]) -> int:
    """How many times after the first five touched at least half a fresh mapping's pages."""
    return sum(count > MAPPING // 2 for count in faults[5:])


def probe(setting: str, **env: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, setting], cwd=REPO, env={**ENV, **env},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_kept_memory_is_reused_without_faulting_its_pages_in_again():
    default, kept = probe("default"), probe("kept")
    assert kept["applied"]
    assert faulting_times(default["faults"]) == TIMES - 5  # the default maps and unmaps each time
    assert faulting_times(kept["faults"]) <= (TIMES - 5) // 3


def test_a_users_own_malloc_tunables_are_left_alone():
    own = probe("kept", GLIBC_TUNABLES="glibc.malloc.mmap_max=65536")
    assert not own["applied"]
    assert faulting_times(own["faults"]) == TIMES - 5
