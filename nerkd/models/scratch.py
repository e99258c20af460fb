"""Offline building blocks: a Unigram tokenizer trained on local text and a tiny CamemBERT.

Used by the tests and by the quickstart (``nerkd finetune --base scratch``, built by
:func:`scratch_model`) so that the whole chain runs with no download. Real use starts from
``Jean-Baptiste/camembert-ner`` or your own teacher instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from nerkd.errors import SettingsError

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
SCRATCH = "scratch"   # ``nerkd finetune --base scratch``
SCRATCH_LAYERS, SCRATCH_HIDDEN, SCRATCH_HEADS, SCRATCH_VOCAB = 4, 128, 4, 2000


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000):
    """A SentencePiece/Unigram-style fast tokenizer (CamemBERT's specials), trained on ``texts``."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>",
                                      shrinking_factor=0.75, max_piece_length=12)
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
        cls_token="<s>", pad_token="<pad>", mask_token="<mask>", model_max_length=512,
    )


def tiny_config(vocab_size: int, labels: list[str], layers: int = 2, hidden: int = 64, heads: int = 4,
                intermediate: int | None = None, max_positions: int = 130, pad_token_id: int = 1):
    from transformers import CamembertConfig

    return CamembertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate or 4 * hidden, max_position_embeddings=max_positions + 2,
        pad_token_id=pad_token_id, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
        id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)},
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )


def build_tiny_model(folder: str | Path, texts: Iterable[str], labels: list[str], *, layers: int = 2,
                     hidden: int = 64, heads: int = 4, vocab_size: int = 1000, seed: int = 0,
                     crf: bool = False) -> Path:
    """Train a tokenizer, initialise a tiny CamemBERT token classifier, save both to ``folder``."""
    import torch

    from nerkd.models.ner import NerModel

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(texts, vocab_size)
    config = tiny_config(len(tokenizer), labels, layers=layers, hidden=hidden, heads=heads,
                         pad_token_id=tokenizer.pad_token_id)
    model = NerModel.from_config(config, crf=crf)
    model.save(folder, tokenizer=tokenizer)
    return Path(folder)


def scratch_model(texts: list[str], space, crf: bool, max_length: int, *, layers: int = SCRATCH_LAYERS,
                  hidden: int = SCRATCH_HIDDEN, heads: int = SCRATCH_HEADS, vocab_size: int = SCRATCH_VOCAB,
                  tokenizer=None):
    """``--base scratch``: a fresh tiny CamemBERT token classifier over ``space`` (a
    :class:`~nerkd.data.labels.LabelSpace`) and its Unigram tokenizer trained on ``texts``
    (``tokenizer`` given: that one, e.g. the one a resumed run saved). Returns ``(NerModel, tokenizer)``."""
    from nerkd.models.ner import NerModel

    if layers < 1 or hidden < heads or hidden % heads:
        raise SettingsError(f"--scratch-layers {layers} / --scratch-hidden {hidden}: need >= 1 layer and a hidden "
                            f"size that is a multiple of {heads} (the heads)")
    if tokenizer is None:
        tokenizer = train_tokenizer(texts, vocab_size)
    config = tiny_config(len(tokenizer), list(space.labels), layers=layers, hidden=hidden, heads=heads,
                         max_positions=max(128, max_length), pad_token_id=tokenizer.pad_token_id)
    return NerModel.from_config(config, crf=crf), tokenizer
