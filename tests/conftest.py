"""Test-wide settings."""

import torch

# The tests train tiny models: one thread avoids oversubscribing small CPUs (30x faster on 2 busy cores).
torch.set_num_threads(1)
