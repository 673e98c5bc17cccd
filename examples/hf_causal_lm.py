"""Probe a HuggingFace causal language model with ``deepscope probe`` — offline, on a CPU.

The model is a two-layer GPT-2 of about 20k parameters (``tiny-gpt2/config.json``), built
with random weights; the data are 256 synthetic token sequences of 16 tokens, with structure
a language model can pick up (repeated motifs, counting, mirrors), so no tokenizer and no
download is needed. The default probe takes about a minute on two CPU cores.

Run from the ``examples`` directory's parent (the current directory is importable)::

    pip install transformers safetensors          # with torch pinned to your build
    deepscope probe hf:examples/tiny-gpt2 --data examples.hf_causal_lm:token_batches

or build the model in Python instead of from the config file::

    deepscope probe examples.hf_causal_lm:tiny_gpt2 --data examples.hf_causal_lm:token_batches

Batches are dicts ``{"input_ids", "attention_mask", "labels"}``, so the loss is the model's
own, ``model(**batch).loss`` (next-token cross-entropy; GPT-2 shifts the labels itself). The
input-sensitivity probe needs one input tensor and is skipped for dict batches. Probe a model
of your own by pointing ``hf:`` at its config or at a local directory holding its weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

CONFIG = Path(__file__).parent / "tiny-gpt2" / "config.json"
VOCAB = 64  # tokens 1..63 are "words", 0 starts every sequence (GPT-2's bos/eos here)
LENGTH = 16  # tokens per sequence, at most the config's n_positions


def sequence(kind: int, g: torch.Generator) -> torch.Tensor:
    """One sequence of ``LENGTH`` tokens: 0, then a pattern the model can learn.

    kind 0 — a motif of 2–5 random words repeated (predictable after its first occurrence);
    kind 1 — counting: start s, step d, modulo the 63 words (predictable from two tokens);
    kind 2 — a mirror: random words, then the same words reversed.
    """
    n = LENGTH - 1
    if kind == 0:
        period = int(torch.randint(2, 6, (), generator=g))
        motif = torch.randint(1, VOCAB, (period,), generator=g)
        body = motif.repeat(n // period + 1)[:n]
    elif kind == 1:
        start, step = (int(v) for v in torch.randint(0, VOCAB - 1, (2,), generator=g))
        body = (start + (step % 7 + 1) * torch.arange(n)) % (VOCAB - 1) + 1
    else:
        half = torch.randint(1, VOCAB, ((n + 1) // 2,), generator=g)
        body = torch.cat([half, half.flip(0)])[:n]
    return torch.cat([torch.zeros(1, dtype=torch.long), body])


def token_batches(sequences: int = 256, batch_size: int = 256, seed: int = 0) -> list[dict]:
    """``sequences`` sequences (the three kinds in turn) as a list of dict batches.

    The same list on every call: probes read the data once per pass and need the same
    batches each time (``deepscope probe`` uses the first ``--samples`` sequences). One
    batch (the default) is cheapest: its gradient graph is built once and reused by every
    Hessian-vector product; several batches are streamed, one in memory at a time.
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([sequence(i % 3, g) for i in range(sequences)])
    return [{"input_ids": ids[i : i + batch_size],
             "attention_mask": torch.ones_like(ids[i : i + batch_size]),
             "labels": ids[i : i + batch_size]}
            for i in range(0, sequences, batch_size)]


def tiny_gpt2() -> torch.nn.Module:
    """The model of ``tiny-gpt2/config.json``, built in Python (random weights), for the
    ``module.path:factory`` form of MODEL."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config.from_json_file(str(CONFIG)))
    model.loss_type = "ForCausalLM"  # what transformers falls back to for GPT-2, unannounced
    return model
