"""Offline building blocks: a Unigram tokenizer trained on local text and a tiny CamemBERT.

The tokenizer has CamemBERT's pre-tokenizer (words cut at white space, a ``▁`` before each, sub-word offsets
that never cover a space), a French :data:`ALPHABET` and no bare ``▁`` piece, so that the transformers pipeline
finds the same words as nerkd in an exported folder (``aggregation_strategy="first"``).

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
# characters of French text the vocabulary keeps even when the training text lacks them: an unknown character
# inside a word is an <unk> sub-word, where the transformers pipeline cuts the word in two ("M" + "âcon")
ALPHABET = ("abcdefghijklmnopqrstuvwxyzàâäçéèêëîïôöùûüÿœæABCDEFGHIJKLMNOPQRSTUVWXYZÀÂÄÇÉÈÊËÎÏÔÖÙÛÜŸŒÆ"
            "0123456789.,;:!?'’\"«»()[]{}-–—/\\%€$£@#&*+=<>_~°§…")


def _canonical(tok: Tokenizer) -> Tokenizer:
    """The trained Unigram vocabulary made the same on every run: scores rounded to 9 decimals, pieces
    ordered by score then text after the specials, and the single characters the trainer appends at the
    end (scores 1e-4 apart, in its hash-set order) given those scores in alphabetical order. The trainer's
    sums run in a varying order (its hash maps), so scores differed in the last bits from run to run, and
    with them the order of tied pieces and the segmentation of 102 of the sample's 560 sentences: seeded
    runs did not repeat."""
    import json

    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    n = len(SPECIALS)
    if [piece for piece, _ in vocab[:n]] != SPECIALS:   # not the layout this function knows: leave it
        return tok
    rest = [[piece, round(score, 9)] for piece, score in vocab[n:]]
    # the characters the trainer appends last get scores low, low + 1e-4, ... in its hash-set order:
    # the same characters and scores every run, paired alphabetically here
    low = min((score for _, score in rest), default=0.0)
    top = low + 1e-4 * (sum(len(piece) == 1 for piece, _ in rest) + 1)
    lattice = [i for i, (piece, score) in enumerate(rest) if len(piece) == 1 and score < top
               and abs((score - low) / 1e-4 - round((score - low) / 1e-4)) < 1e-3]
    scores = sorted((rest[i][1] for i in lattice), reverse=True)
    for i, piece, score in zip(lattice, sorted(rest[i][0] for i in lattice), scores, strict=True):
        rest[i] = [piece, score]
    rest.sort(key=lambda x: (-x[1], x[0]))
    data["model"]["vocab"] = vocab[:n] + rest
    return Tokenizer.from_str(json.dumps(data))


def _word_initial(tok: Tokenizer) -> Tokenizer:
    """No bare ``▁`` piece: each single character ``c`` gets a ``▁c`` piece (score of ``▁`` plus that of ``c``,
    so every segmentation keeps its score), and the bare ``▁`` goes. A word then always starts with a sub-word
    that holds its first character: with a bare ``▁`` (``▁`` + ``vit``) the transformers pipeline, which finds
    words by the spaces around sub-words, reads ``vit`` as a word of its own and tags it with the prediction nerkd
    never trains (nerkd labels a word's first sub-word). Deterministic: the canonical order is kept."""
    import json

    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    n = len(SPECIALS)
    scores = {piece: score for piece, score in vocab[n:]}
    space = scores.pop("\u2581", None)
    if [piece for piece, _ in vocab[:n]] != SPECIALS or space is None:
        return tok
    added = {"\u2581" + c: round(space + score, 9) for c, score in scores.items()
             if len(c) == 1 and "\u2581" + c not in scores}
    rest = sorted([*scores.items(), *added.items()], key=lambda x: (-x[1], x[0]))
    data["model"]["vocab"] = vocab[:n] + [[piece, score] for piece, score in rest]
    return Tokenizer.from_str(json.dumps(data))


def pre_tokenizer():
    """CamemBERT's pre-tokenizer: words cut at white space, each given a ``▁`` that maps to no character, so
    sub-word offsets never cover a space (the transformers pipeline finds words by the spaces around them)."""
    return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                    pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")])


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000, *, bare_space: bool = False):
    """A SentencePiece/Unigram-style fast tokenizer (CamemBERT's specials and pre-tokenizer), trained on ``texts``.

    Its vocabulary holds :data:`ALPHABET` (when ``vocab_size`` is at least 4 times its size) and no bare ``▁``
    piece (see :func:`_word_initial`); ``bare_space``: keep the bare ``▁``, as CamemBERT's vocabulary has it."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizer()
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>",
                                      shrinking_factor=0.75, max_piece_length=12,
                                      initial_alphabet=list(ALPHABET) if vocab_size >= 4 * len(ALPHABET) else [])
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok = _canonical(tok) if bare_space else _word_initial(_canonical(tok))
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
