"""The inference engine shared by ``nerkd infer`` and ``nerkd bench``.

Text -> French words (:func:`~nerkd.data.words.split_words`, exact offsets) -> sub-word windows
(:func:`~nerkd.data.encode.encode`: long texts are cut at word boundaries into overlapping
windows, each word owned by exactly one window, nothing truncated) -> length-bucketed batches
-> logits on the first sub-token of each owned word -> tags (:class:`~nerkd.models.decode.Decoder`: CRF
Viterbi, or argmax constrained to valid transitions) -> entity spans with character offsets.
Because each word gets its tag from exactly one window, an entity crossing a window border
comes out whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nerkd.data.encode import EncodeStats, PieceCache, bucket_batches, collate, encode
from nerkd.data.textpieces import TextPieceCache, encode_text
from nerkd.data.words import split_words
from nerkd.device import DTYPES, autocast, resolve_device, resolve_precision
from nerkd.errors import SettingsError
from nerkd.infer.io import Doc, chunked, result_line
from nerkd.infer.spans import SCORES, entities_of, io_entities
from nerkd.models.decode import Decoder
from nerkd.models.ner import position_limit
from nerkd.models.quantize import quantize_int8

BATCH_SIZE = {"cpu": 32, "cuda": 256}   # default texts per batch (BENCHMARKS.md)
CHUNK_SIZE = {"cpu": 512, "cuda": 2048}  # default texts read, tagged and written together
TOKENIZE = ("words", "text")  # sub-words per French word (as in training), or of the raw text
CPU_MAX_TOKENS = 512   # padded sub-words per batch on CPU: activations stay in cache (BENCHMARKS.md)


def compile_encoder(model: nn.Module, device: torch.device) -> Callable[[], AbstractContextManager]:
    """``torch.compile`` the encoder for inference, shapes dynamic (batches vary in rows and width);
    returns the scope every call of the compiled encoder must run in.

    On CPU, inductor's *freezing* is on inside that scope: weights become constants, so GEMMs use
    pre-packed oneDNN weights (CamemBERT-base on the 2-core machine of BENCHMARKS.md: the encoder
    1.26x faster, ``nerkd infer`` 1.18x). The graph compiles lazily, at the first call (and again
    when a new shape forces a recompile), which is when inductor reads the flag: so the scope is
    around the calls, not around ``torch.compile`` (passing ``torch.compile(options={"freezing":
    True})`` was measured to have no effect). The first batches pay the compilation (about 45 s
    for CamemBERT-base on 2 cores); worth it for large inputs only.
    """
    model.encoder_model = torch.compile(model.encoder_model, dynamic=True)
    return inductor_freezing if device.type == "cpu" else contextlib.nullcontext


class TracedEncoder:
    """The encoder as a TorchScript trace, made at the first batch (``infer.jit``, CPU fp32).

    At batch 1 on a CPU, eager PyTorch spends about a quarter of a MiniLM student's forward in Python between the
    ops (``benchmarks/latency_profile.py``, BENCHMARKS.md); the trace runs the same aten ops without it, so the
    logits are the same. The example it is traced on always holds a padded row (the first batch, plus a
    copy of its first row with its last position masked), so the masking path is in the graph whatever
    the first batch was; shapes stay dynamic (a trace records ops, not sizes, for these encoders: checked
    against eager on other lengths and batch sizes in ``tests/test_jit.py``). If tracing fails the
    engine runs eagerly: :attr:`error` says why."""

    def __init__(self, encoder: nn.Module):
        self.encoder, self.graph, self.error = encoder, None, None

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.graph is None and self.error is None:
            self._trace(input_ids, attention_mask)
        if self.graph is None:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).logits
        out = self.graph(input_ids, attention_mask)
        return out["logits"] if isinstance(out, dict) else out[0]

    def _trace(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        import warnings

        ids = torch.cat([input_ids, input_ids[:1]])
        mask = torch.cat([attention_mask, attention_mask[:1]])
        if ids.shape[1] > 1:
            mask[-1, -1] = 0
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                self.graph = torch.jit.trace(self.encoder, (ids, mask), strict=False, check_trace=False)
        except Exception as e:  # noqa: BLE001 - any architecture the tracer cannot follow runs eagerly
            self.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]


def inductor_freezing() -> AbstractContextManager:
    """Inductor's ``freezing`` on for what compiles inside, back to its previous value after: the
    flag (``torch._inductor.config``) is process-wide, so a training compile elsewhere in the
    process keeps its own setting."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)


@dataclass
class RunStats:
    docs: int = 0
    words: int = 0
    entities: int = 0
    empty: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.words / self.seconds if self.seconds > 0 else 0.0
        docs_rate = self.docs / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.docs} docs ({self.empty} empty), {self.entities} entities, {self.words} words "
                f"in {self.seconds:.1f} s: {rate:,.0f} words/s, {docs_rate:,.1f} docs/s")


class Engine:
    """A loaded model ready to tag texts (see module doc).

    On CUDA, bf16/fp16 cast the encoder's weights (no autocast: fewer kernels, half the weight
    reads), and chunks of texts are pipelined: the GPU runs chunk *k+1* while the CPU decodes
    chunk *k* (one pinned device-to-host copy per chunk, no synchronisation per batch).
    """

    def __init__(self, model, tokenizer, *, max_length: int = 128, stride: int = 32, batch_size: int | None = None,
                 max_tokens: int | None = None, device: torch.device | None = None, precision: str = "fp32",
                 int8: bool = False, score: str = "mean", chunk_size: int | None = None,
                 overlap: bool | None = None, tokenize: str = "words", compile: bool = False,
                 entity_bias: float = 0.0, jit: bool = False):
        self.device = device or torch.device("cpu")
        if int8 and self.device.type != "cpu":
            raise SettingsError("int8 dynamic quantisation runs on CPU only: use --device cpu or drop --int8")
        if precision not in ("fp32", "bf16", "fp16"):
            raise SettingsError(f"precision {precision!r}: expected fp32, bf16 or fp16")
        if tokenize not in TOKENIZE:
            raise SettingsError(f"tokenize {tokenize!r}: expected one of {', '.join(TOKENIZE)}")
        if score not in SCORES:
            raise SettingsError(f"score {score!r}: expected one of {', '.join(SCORES)}")
        limit = position_limit(model.config)
        self.max_length = min(max_length, limit) if limit else max_length
        self.stride = min(stride, max(0, self.max_length - 3))
        if max_tokens is None:  # default: capped on CPU only
            max_tokens = CPU_MAX_TOKENS if self.device.type == "cpu" else 0
        self.batch_size = batch_size or BATCH_SIZE.get(self.device.type, 32)
        self.precision, self.score = precision, score
        self.max_tokens = max_tokens or None
        self.chunk_size = chunk_size or CHUNK_SIZE.get(self.device.type, 512)
        self.overlap = self.device.type == "cuda" if overlap is None else overlap
        self.backend = getattr(model, "backend", "torch")
        if self.backend != "torch":  # an exported graph (nerkd.infer.onnx_backend) runs as it was exported
            model.check_runtime(self.device, precision, int8, compile)
            int8 = model.int8
        self.int8 = int8
        if compile and int8:
            raise SettingsError("--compile and --int8 do not go together: drop one of them")
        self.space = model.labels
        self.entity_bias = entity_bias   # logit offset against O (``redact.bias``); settable between calls
        self.outside = self.space.labels.index("O")
        self.decoder = Decoder(self.space, model.crf)
        # IO without CRF: every transition is valid, constrained decoding == argmax (vectorised fast path)
        self.free = model.crf is None and bool(self.decoder.trans.all() and self.decoder.start.all()
                                               and self.decoder.end.all())
        model.eval()
        self.num_parameters = sum(p.numel() for p in model.parameters())  # before int8 packs the weights
        if int8 and self.backend == "torch":
            model = quantize_int8(model)
        self.cast = self.device.type == "cuda" and precision != "fp32"
        if self.cast:
            model.encoder_model.to(DTYPES[precision])
        self.model = model.to(self.device)
        self.compiled = compile
        self.compile_scope = compile_encoder(self.model, self.device) if compile else contextlib.nullcontext
        # ``infer.jit``: the eager model stays untouched (a caller may go on training it)
        self.traced = (TracedEncoder(self.model.encoder_model) if jit and self.backend == "torch" and not int8
                       and not compile and self.device.type == "cpu" and precision == "fp32" else None)
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.encoded = EncodeStats()
        self.pieces = PieceCache(tokenizer)
        self.tokenize = tokenize
        self.text_pieces = TextPieceCache(tokenizer) if tokenize == "text" else None

    @classmethod
    def load(cls, ref: str | Path, *, device: str = "auto", precision: str = "auto", int8: bool = False,
             revision: str | None = None, trust_remote_code: bool = False, backend: str = "torch",
             verify: bool | None = None, **kwargs) -> Engine:
        """Load a model folder (or hub id) and its tokenizer; ``device``/``precision`` are settings values.

        ``backend``: ``torch``, ``onnx`` (a folder written by ``nerkd export --format onnx``, run by
        ONNX Runtime on CPU with torch's thread count) or ``auto`` (onnx for such a folder). ``verify``:
        check the weights against the sha256 nerkd recorded (None: setting ``models.verify``)."""
        from nerkd.infer.onnx_backend import resolve_backend
        from nerkd.models.ner import NerModel, load_tokenizer

        if resolve_backend(ref, backend) == "onnx":
            from nerkd.infer.onnx_backend import OnnxModel, load_onnx_tokenizer

            model = OnnxModel.load(ref, verify=verify)
            return cls(model, load_onnx_tokenizer(ref), device=torch.device("cpu") if device == "auto" else
                       resolve_device(device), precision="fp32" if precision == "auto" else precision,
                       int8=int8, **kwargs)
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        model = NerModel.load(ref, revision=revision, trust_remote_code=trust_remote_code, what="model",
                              option="--model", verify=verify)
        tokenizer = load_tokenizer(ref, revision=revision, trust_remote_code=trust_remote_code, what="model",
                                   option="--model")
        return cls(model, tokenizer, device=dev, precision=prec, int8=int8, **kwargs)

    # -- word level ----------------------------------------------------------------------
    def _launch_scores(self, word_lists: Sequence[Sequence[str]],
                       texts: tuple[Sequence[str], Sequence[Sequence[tuple[str, int, int]]]] | None = None
                       ) -> _Scores:
        """Encode ``word_lists`` (or, with ``texts`` = ``(texts, their split_words)`` and
        ``tokenize: text``, the raw texts) and queue the model on them; the logits of every word land
        in one flat ``[sum W_i, L]`` tensor (copied to the CPU without waiting, on CUDA)."""
        counts = [len(words) for words in word_lists]
        total = sum(counts)
        flat = torch.zeros(total, len(self.space), device=self.device)
        filled = torch.zeros(total, dtype=torch.bool)
        keep = [i for i, n in enumerate(counts) if n]
        if keep:
            base = torch.tensor([0, *counts], dtype=torch.long).cumsum(0)
            if texts is not None and self.text_pieces is not None:
                windows = encode_text(self.text_pieces, self.pieces, [texts[0][i] for i in keep],
                                      [texts[1][i] for i in keep], self.max_length, self.stride, self.encoded)
            else:
                windows = encode(self.tokenizer, [word_lists[i] for i in keep], None, self.max_length, self.stride,
                                 self.encoded, cache=self.pieces)
            keep_t = torch.tensor(keep, dtype=torch.long)
            with torch.inference_mode(), self.compile_scope():   # a compiled encoder compiles in it
                for idx in bucket_batches([len(w) for w in windows], self.batch_size, self.max_tokens):
                    chosen = [windows[i] for i in idx]
                    batch = collate(chosen, self.pad_id)
                    if chosen[0].slots is None:
                        rows, cols = torch.nonzero(batch["word_index"] >= 0, as_tuple=True)
                        pos = base[keep_t[batch["sent"][rows]]] + batch["word_index"][rows, cols]
                    else:
                        rows, cols, pos = _slot_index(chosen, base, keep)
                    filled[pos] = True
                    if self.traced is not None:
                        logits = self.traced(batch["input_ids"], batch["attention_mask"])
                    else:
                        with autocast(self.device, "fp32" if self.cast else self.precision):
                            logits = self.model(batch["input_ids"].to(self.device, non_blocking=True),
                                                batch["attention_mask"].to(self.device, non_blocking=True)).logits
                    dev = self.device
                    flat[pos.to(dev, non_blocking=True)] = logits[rows.to(dev, non_blocking=True),
                                                                  cols.to(dev, non_blocking=True)].float()
        if not bool(filled.all()):
            raise RuntimeError(f"{int((~filled).sum())} words got no prediction (window bug)")
        event = None
        if self.device.type == "cuda":
            host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
            host.copy_(flat, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            flat = host
        return _Scores(flat, counts, event)

    def biased(self, flat: torch.Tensor) -> torch.Tensor:
        """Word logits ``[N, L]`` with :attr:`entity_bias` subtracted from the ``O`` logit (a copy; ``flat``
        itself when the bias is 0). Decoding (argmax, constrained Viterbi, CRF Viterbi) and the probabilities
        of the chosen tags both read the biased logits, so a positive bias tags more words as entities: a word
        stays ``O`` only when ``O`` beats every entity tag by more than the bias."""
        if not self.entity_bias:
            return flat
        out = flat.clone()
        out[:, self.outside] -= float(self.entity_bias)
        return out

    def _decode(self, scores: _Scores) -> list[tuple[list[str], list[float]]]:
        """Tags and the probabilities of the chosen tags, per word list (waits for the device)."""
        if scores.event is not None:
            scores.event.synchronize()
        labels = self.space.labels
        flat = self.biased(scores.flat)
        probs = torch.softmax(flat, -1)
        out: list[tuple[list[str], list[float]]] = []
        if self.free:  # plain argmax, one vectorised pass
            conf, ids = probs.max(-1)
            ids_l, conf_l = ids.tolist(), conf.tolist()
            at = 0
            for n in scores.counts:
                out.append(([labels[i] for i in ids_l[at: at + n]], conf_l[at: at + n]))
                at += n
            return out
        at = 0
        for n in scores.counts:
            if n == 0:
                out.append(([], []))
                continue
            ids = self.decoder(flat[at: at + n])
            chosen = probs[torch.arange(at, at + n), torch.tensor(ids, dtype=torch.long)].tolist()
            out.append(([labels[i] for i in ids], chosen))
            at += n
        return out

    def word_scores(self, word_lists: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """Logits ``[W_i, L]`` (float32, CPU) of each word of each word list."""
        scores = self._launch_scores(word_lists)
        if scores.event is not None:
            scores.event.synchronize()
        return list(torch.split(scores.flat, scores.counts)) if scores.counts else []

    def tag_words(self, word_lists: Sequence[Sequence[str]]) -> list[tuple[list[str], list[float]]]:
        """``(tags, probabilities of the chosen tags)`` for each word list."""
        return self._decode(self._launch_scores(word_lists))

    # -- text level ----------------------------------------------------------------------
    def _launch(self, texts: Sequence[str]) -> _Chunk:
        words = [split_words(t) for t in texts]
        return _Chunk(texts, words, self._launch_scores([[w for w, _, _ in ws] for ws in words], (texts, words)))

    def _finish(self, chunk: _Chunk) -> tuple[list[list[dict]], int]:
        scores = chunk.scores
        if self.free:  # IO without CRF: argmax, spans found vectorised
            if scores.event is not None:
                scores.event.synchronize()
            conf, ids = torch.softmax(self.biased(scores.flat), -1).max(-1)
            ents = io_entities(chunk.texts, chunk.words, scores.counts, ids, conf, self.space.labels, self.score)
            return ents, sum(scores.counts)
        tagged = self._decode(scores)
        ents = [entities_of(t, ws, tags, probs, self.score)
                for t, ws, (tags, probs) in zip(chunk.texts, chunk.words, tagged, strict=True)]
        return ents, sum(chunk.scores.counts)

    def _pipeline(self, chunks: Iterable[Sequence[str]]) -> Iterator[tuple[list[list[dict]], int]]:
        """``(entities per text, words)`` per chunk, in order. With ``overlap``, chunk *k+1* is
        queued on the device before chunk *k* is decoded; an error raised by ``chunks`` comes
        after the chunk before it has been yielded."""
        pending: _Chunk | None = None
        it = iter(chunks)
        while True:
            try:
                texts = next(it)
            except StopIteration:
                break
            except Exception:
                if pending is not None:
                    yield self._finish(pending)
                raise
            launched = self._launch(texts)
            if not self.overlap:
                yield self._finish(launched)
                continue
            if pending is not None:
                yield self._finish(pending)
            pending = launched
        if pending is not None:
            yield self._finish(pending)

    def predict(self, texts: Sequence[str]) -> list[list[dict]]:
        """Entities (character offsets into each text) for each text."""
        parts = (texts[i: i + self.chunk_size] for i in range(0, len(texts), self.chunk_size))
        return [ents for chunk_ents, _ in self._pipeline(parts) for ents in chunk_ents]

    def predict_probs(self, texts: Sequence[str]) -> list[tuple[list[dict], torch.Tensor]]:
        """For each text: its entities (exactly as :meth:`predict` gives them) and the probability of every
        label for each of its words (``[W_i, L]``, float32 on the CPU, words in :func:`split_words` order,
        labels in ``self.space`` order): the softmax of the logits that decoding reads (:attr:`entity_bias`
        applied; for a CRF model, of its emissions, not the CRF's marginals). ``nerkd select`` scores the
        model's uncertainty with them."""
        out: list[tuple[list[dict], torch.Tensor]] = []
        for i in range(0, len(texts), self.chunk_size):
            chunk = self._launch(texts[i: i + self.chunk_size])
            ents, _ = self._finish(chunk)      # waits for the device
            probs = torch.softmax(self.biased(chunk.scores.flat.float().cpu()), -1)
            out += zip(ents, torch.split(probs, chunk.scores.counts), strict=True)
        return out

    def run(self, docs: Iterable[Doc], write: Callable[[bytes], None], *, chunk_size: int | None = None,
            on_chunk: Callable[[list[Doc], RunStats], None] | None = None,
            line: Callable[[Doc, list[dict]], bytes] = result_line) -> RunStats:
        """Tag a stream of documents chunk by chunk, writing one line per document in input order.

        ``write`` gets whole chunks of lines (``line`` makes each: nerkd's JSONL by default, see
        :mod:`nerkd.infer.formats`); a read error (bad UTF-8, bad JSONL) is raised after every
        document before it has been written.
        """
        import time

        stats = RunStats()
        start = time.perf_counter()
        done: list[list[Doc]] = []

        def texts_of(chunks):
            for chunk in chunks:
                done.append(chunk)
                yield [d.text for d in chunk]

        try:
            source = chunked(iter(docs), chunk_size or self.chunk_size)
            for results, n_words in self._pipeline(texts_of(source)):
                chunk = done.pop(0)
                write(b"".join(line(d, ents) for d, ents in zip(chunk, results, strict=True)))
                stats.docs += len(chunk)
                stats.empty += sum(1 for d in chunk if not d.text.strip())
                stats.entities += sum(len(e) for e in results)
                stats.words += n_words
                stats.seconds = time.perf_counter() - start
                if on_chunk is not None:
                    on_chunk(chunk, stats)
        finally:
            stats.seconds = time.perf_counter() - start
        return stats


def _slot_index(windows, base: torch.Tensor, keep: list[int]) -> tuple[torch.Tensor, ...]:
    """``(rows, columns, flat word positions)`` of the words owned by raw-text ``windows``."""
    rows: list[int] = []
    cols: list[int] = []
    pos: list[int] = []
    for r, w in enumerate(windows):
        positions, words = w.slots
        rows += [r] * len(positions)
        cols += positions
        start = int(base[keep[w.sent]])
        pos += [start + k for k in words]
    return (torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long),
            torch.tensor(pos, dtype=torch.long))


@dataclass
class _Scores:
    flat: torch.Tensor          # [sum W_i, L] word logits (pinned CPU copy on CUDA, valid after ``event``)
    counts: list[int]           # W_i per word list
    event: object | None        # torch.cuda.Event recorded after the copy, or None


@dataclass
class _Chunk:
    texts: Sequence[str]
    words: list[list[tuple[str, int, int]]]
    scores: _Scores
