"""Benchmark memory while a pool of 1,000,000 texts streams through the scoring path.

Usage::

    .venv/bin/python -m bench.bench_stream --out bench/out/stream.json
    .venv/bin/python -m bench.bench_stream --quick          # 20,000 texts, a smoke run

Issue 6 asks that scoring a 1,000,000-text pool stream in chunks with bounded memory. On a CPU
the default model scores about 50 BBC texts/s (hours for a million), so here the network is a
randomly initialised BERT of 2 layers and width 32 behind the default model's own tokenizer
(``LABELWISE_MODEL``, the built-in MiniLM-L6 unless set), briefly fine-tuned so that it is a
fitted classifier: everything the pool goes through is the product's (the generator read in
chunks of ``SCORING_CHUNK``, prefix tokenising, the next chunk tokenised in a thread, packed
ids, length-sorted batches, the copies to the device and back), while the network's own memory
is a constant per batch that the real model would only raise once (see the scoring step's
stream with it). ``--model`` names a real model to stream with instead.

The texts are the BBC News corpus repeated, each made distinct by a counter; only each chunk's
predicted classes are counted, as a caller that writes them out would keep nothing. After each
chunk: the texts so far, the peak RSS and the RSS. Memory is bounded when the peak stops
growing after the first chunks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_scoring import corpus, peak_rss_mb, stream
from bench.jsonfile import emit
from db.settings import Settings
from learner.model import SCORING_CHUNK, TrainConfig, TransformerClassifier, resolve_model_path

TINY = "tiny"


def tiny_model(tokenizer_spec: str, folder: Path) -> Path:
    """A random 2-layer, width-32 BERT with the tokenizer of ``tokenizer_spec``, saved in
    ``folder``."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer_spec),
                                              local_files_only=True)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=512, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 texts")
    parser.add_argument("--texts", type=int, help="texts streamed (default 1,000,000)")
    parser.add_argument("--model", default=TINY,
                        help="'tiny' (the default: a random 2-layer BERT with the default "
                             "model's tokenizer) or a model spec")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    n = args.texts or (20_000 if args.quick else 1_000_000)
    tokenizer_spec = Settings.from_env().model_path
    texts, labels = corpus()
    with tempfile.TemporaryDirectory(prefix="labelwise-stream-") as tmp:
        model = (str(tiny_model(tokenizer_spec, Path(tmp))) if args.model == TINY
                 else args.model)
        # fp32: the faster precisions are about the network's arithmetic, not the stream's memory
        config = TrainConfig(max_length=128, epochs=1, device=args.device, precision="fp32")
        t = time.perf_counter()
        clf = TransformerClassifier(model, config).fit(texts[:64], labels[:64])
        fit_s = time.perf_counter() - t
        streamed = stream(clf, texts[64:], n)
    import torch

    emit({"model": args.model, "tokenizer": tokenizer_spec, "device": clf._device,
          "torch_threads": torch.get_num_threads(), "max_length": 128,
          "chunk": SCORING_CHUNK, "fit_s": round(fit_s, 1), "stream": streamed,
          "peak_rss_end_mb": peak_rss_mb()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
