"""Tokenizers for text towers, stored as a ``tokenizers`` ``tokenizer.json`` beside the weights.

Ids 0, 1, 2 are always ``[PAD]``, ``[SOS]``, ``[EOT]``: the text tower pools at the ``[EOT]`` token
(the last real token), and padding is masked out, so padded and unpadded batches agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from zoo.errors import ConfigError

SPECIAL_TOKENS = ["[PAD]", "[SOS]", "[EOT]", "[UNK]"]
PAD_ID, SOS_ID, EOT_ID = 0, 1, 2


def train_wordpiece(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 1) -> Tokenizer:
    """Train a lower-cased WordPiece tokenizer on a caption corpus (deterministic for a fixed corpus)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(),
                                                 normalizers.StripAccents()])
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return with_template(tokenizer)


def with_template(tokenizer: Tokenizer) -> Tokenizer:
    """Wrap every text as ``[SOS] text [EOT]``."""
    if tokenizer.token_to_id("[SOS]") != SOS_ID or tokenizer.token_to_id("[EOT]") != EOT_ID:
        raise ConfigError("tokenizer must map [PAD], [SOS], [EOT] to ids 0, 1, 2")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[SOS] $A [EOT]", special_tokens=[("[SOS]", SOS_ID), ("[EOT]", EOT_ID)]
    )
    return tokenizer


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], context_length: int,
                 end_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Texts → ``(ids, attention_mask)`` int64 ``[B, context_length]`` for any ``tokenizer.json``.

    Texts longer than the context are truncated, never rejected, and still end with the closing token
    ``end_id``; an empty text still yields ``[SOS] [EOT]``. By default ``end_id`` is the tokenizer's own
    (:func:`end_token_id`: our ``[EOT]``, MiniLM's ``[SEP]``, CLIP's ``<end_of_text>``), as open_clip's
    and Hugging Face's tokenizers keep theirs; ``[EOT]`` for a tokenizer that closes with nothing.
    """
    if isinstance(texts, str):
        raise ConfigError("encode_texts takes a list of strings, not one string")
    if end_id is None:
        own = end_token_id(tokenizer)
        end_id = EOT_ID if own is None else own
    tokenizer.enable_truncation(max_length=context_length)
    tokenizer.no_padding()
    ids = np.zeros((len(texts), context_length), dtype=np.int64)
    mask = np.zeros((len(texts), context_length), dtype=np.int64)
    for row, encoding in enumerate(tokenizer.encode_batch([str(t) for t in texts])):
        tokens = encoding.ids[:context_length]
        if tokens and tokens[-1] != end_id:
            tokens[-1] = end_id
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask


def load_tokenizer(path: str) -> Tokenizer:
    """Read a ``tokenizer.json``."""
    return Tokenizer.from_file(path)


def end_token_id(tokenizer: Tokenizer) -> int | None:
    """The id the tokenizer's post-processor closes every text with (``[EOT]``, BERT's ``[SEP]``...)."""
    tokenizer.no_padding()
    ids = tokenizer.encode("").ids
    return ids[-1] if ids else None
