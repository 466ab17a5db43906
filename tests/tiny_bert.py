"""A tiny, randomly initialised BERT built on the fly, and texts it can learn.

Nothing is downloaded: the tokenizer's vocabulary is written here and the model weights are
random. The checkpoint directory is a drop-in ``model_path`` for ``TransformerClassifier``;
``tests/conftest.py`` builds it once per session as the ``tiny_model_dir`` fixture.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

FRUIT = ["apple", "banana", "cherry", "grape", "mango", "pear", "plum", "lemon"]
VEHICLE = ["car", "truck", "bus", "train", "bike", "van", "tram", "boat"]
COLOUR = ["red", "green", "blue", "yellow", "black", "white", "pink", "grey"]
FILLER = ["the", "a", "is", "and", "of", "i", "like", "see", "my", "very", "big", "small"]

VOCAB = SPECIAL_TOKENS + FRUIT + VEHICLE + COLOUR + FILLER


def synthetic_texts(n_per_class: int, classes: tuple[str, ...] = ("fruit", "vehicle"), seed: int = 0) -> tuple[list[str], list[str]]:
    """Short texts whose class shows in their content words, shuffled deterministically.

    Args:
        n_per_class: Texts per class.
        classes: Any of ``"fruit"``, ``"vehicle"``, ``"colour"``.
        seed: Seed of the word choice and order.

    Returns:
        ``(texts, labels)``.
    """
    import random

    words = {"fruit": FRUIT, "vehicle": VEHICLE, "colour": COLOUR}
    rnd = random.Random(seed)
    items = []
    for label in classes:
        for _ in range(n_per_class):
            content = rnd.sample(words[label], k=rnd.randint(1, 3))
            filler = rnd.sample(FILLER, k=rnd.randint(0, 6))
            tokens = content + filler
            rnd.shuffle(tokens)
            items.append((" ".join(tokens), label))
    rnd.shuffle(items)
    return [t for t, _ in items], [label for _, label in items]


def build_tiny_bert(root: Path) -> Path:
    """Write a tiny random BERT (2 layers, hidden size 32) with its tokenizer under ``root``;
    returns the checkpoint folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab_file = root / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    # transformers 5: ``vocab`` takes the file path (``vocab_file=`` is silently ignored).
    tokenizer = BertTokenizerFast(vocab=str(vocab_file))
    assert tokenizer.convert_tokens_to_ids("apple") == VOCAB.index("apple")

    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    torch.manual_seed(1234)
    model = BertForSequenceClassification(config)
    checkpoint = root / "checkpoint"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    return checkpoint
