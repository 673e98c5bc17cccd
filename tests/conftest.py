"""Tests run on one torch thread (the CI machine has two cores and pytest may share them)."""

import torch

torch.set_num_threads(1)
