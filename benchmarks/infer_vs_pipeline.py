#!/usr/bin/env python
"""``nerkd infer`` engine vs the transformers ``token-classification`` pipeline, same model.

On N real French sentences (WikiNEuRal-fr validation split, detokenised), this times:

* the pipeline (``aggregation_strategy="simple"``) at batch 1 and batched;
* nerkd's inference engine (the one behind ``nerkd infer``) on the same model, fp32, with its
  default word-by-word sub-words and with ``--tokenize text`` (the raw text's sub-words, as the
  pipeline); ``--rows fp32`` keeps only these rows, the pipeline and the plain forward;
* nerkd with ``--int8`` on the same model, and on a smaller "compressed student" (fewer layers,
  some heads pruned), fp32 and int8.

It reports words/s (words = ``nerkd.data.words.split_words`` words, the same count for every
system), ms/sentence, ratios measured in the same run, and the agreement of the entity spans
between nerkd and the pipeline, with every difference put in a category. With ``--train-steps``
(random model only) a small IO tagger is also trained on the other sentences (word lists, as nerkd
trains) and each system's span F1 against the gold spans is reported, ``--tokenize text`` included.

Without ``--model`` the model is a CamemBERT-base-shaped token classifier (12 layers, hidden 768,
12 heads, fp32) with random weights and a Unigram tokenizer trained on the WikiNEuRal sentences
(``nerkd.models.scratch.train_tokenizer``). Random weights tag almost nothing or everything, so the
classifier is re-drawn with larger weights and its "O" bias set so that about ``--entity-rate`` of
the tokens get an entity label: the spans then vary and the agreement means something. Give
``--model FOLDER`` (a saved nerkd/transformers token classifier) to measure a trained model.

Run (2-core CPU, about 7 minutes):

    python benchmarks/infer_vs_pipeline.py --sentences 300 --threads 1

Systems take turns on the same blocks of ``--block`` sentences, so a machine that other jobs
share slows them all alike. On a shared 2-core machine use ``--threads 1``: with 2 threads every
OpenMP barrier waits for a core that another job holds, and times swing by 10x or more.

GPU: add ``--device cuda`` (int8 rows are replaced by bf16 autocast rows).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import orjson  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nerkd.data.readers import read_sentences  # noqa: E402
from nerkd.data.schemes import spans_of  # noqa: E402
from nerkd.data.words import split_words  # noqa: E402
from nerkd.infer import Engine, detokenize  # noqa: E402
from nerkd.models.heads import encoder_layers, keep_heads  # noqa: E402
from nerkd.models.ner import NerModel, load_tokenizer  # noqa: E402

IO_LABELS = ["O", "I-LOC", "I-PER", "I-MISC", "I-ORG"]   # camembert-ner's label set
DEFAULT_DATA = REPO.parent / "shared" / "data" / "wikineural-fr" / "val.conllu"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CoNLL file of French sentences")
    p.add_argument("--sentences", "-n", type=int, default=400, help="sentences timed and compared")
    p.add_argument("--offset", type=int, default=0, help="index of the first sentence used")
    p.add_argument("--model", type=Path, help="trained model folder (default: random CamemBERT-base shape)")
    p.add_argument("--student", type=Path, help="compressed student folder (default: built from the model)")
    p.add_argument("--student-layers", type=int, default=6)
    p.add_argument("--student-heads", type=int, default=8, help="heads kept per student layer")
    p.add_argument("--vocab", type=int, default=32000, help="tokenizer vocabulary (random model)")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--entity-rate", type=float, default=0.12, help="share of entity tokens (random model)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--block", type=int, default=128,
                   help="sentences per turn: each system gets the same block (batched: in batches of --batch-size)")
    p.add_argument("--keep", action="store_true", help="keep the temporary model folders")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--skip-pipeline-batch1", action="store_true", help="the slowest row; skip it")
    p.add_argument("--rows", choices=["all", "fp32"], default="all",
                   help="fp32: only the pipeline, the plain forward and nerkd fp32 (default, --tokenize text, "
                        "--compile), nerkd batched only")
    p.add_argument("--skip-agreement", action="store_true", help="timings only, no agreement analysis")
    p.add_argument("--big-batch", type=int, default=0,
                   help="also time nerkd (fp32, and bf16 on GPU) with this batch size (0: no such row)")
    p.add_argument("--train-steps", type=int, default=300,
                   help="also train a small model this many steps for a meaningful agreement (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write all numbers here")
    return p.parse_args(argv)


# -- models ------------------------------------------------------------------------------
def build_random_model(args, texts: list[str], folder: Path) -> tuple[float, int]:
    """CamemBERT-base-shaped random classifier + trained tokenizer, saved to ``folder``."""
    from nerkd.models.scratch import tiny_config, train_tokenizer

    start = time.perf_counter()
    tokenizer = train_tokenizer(texts, args.vocab)
    tok_seconds = time.perf_counter() - start
    torch.manual_seed(args.seed)
    config = tiny_config(len(tokenizer), IO_LABELS, layers=args.layers, hidden=args.hidden, heads=args.heads,
                         intermediate=4 * args.hidden, max_positions=512, pad_token_id=tokenizer.pad_token_id)
    model = NerModel.from_config(config).eval()
    calibrate_classifier(model, tokenizer, texts[:64], args.entity_rate)
    model.save(folder, tokenizer=tokenizer)
    return tok_seconds, len(tokenizer)


@torch.inference_mode()
def calibrate_classifier(model: NerModel, tokenizer, texts: list[str], rate: float) -> None:
    """Larger random classifier weights, and an "O" bias leaving about ``rate`` of tokens as entities."""
    clf = model.encoder_model.classifier
    clf.weight.normal_(0.0, 0.2)
    clf.bias.zero_()
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    logits = model(enc["input_ids"], enc["attention_mask"]).logits[enc["attention_mask"].bool()]
    margin = logits[:, 1:].max(-1).values - logits[:, 0]
    clf.bias[0] = torch.quantile(margin, 1.0 - rate)


def build_student(base: Path, folder: Path, n_layers: int, n_heads: int) -> None:
    """Keep ``n_layers`` evenly spaced layers of ``base`` and the first ``n_heads`` heads of each."""
    model = NerModel.load(base)
    layers = model.encoder_model.base_model.encoder.layer
    keep = [round(i * (len(layers) - 1) / max(1, n_layers - 1)) for i in range(n_layers)]
    model.encoder_model.base_model.encoder.layer = nn.ModuleList([layers[i] for i in keep])
    model.config.num_hidden_layers = n_layers
    for la in encoder_layers(model):
        keep_heads(la, list(range(min(n_heads, la.num_heads))))
    model.save(folder, tokenizer=load_tokenizer(base))


# -- systems -----------------------------------------------------------------------------
def pipeline_spans_one(e: dict) -> tuple[int, int, str]:
    return int(e["start"]), int(e["end"]), e["entity_group"]


def pipeline_spans(out: list[dict]) -> list[tuple[int, int, str]]:
    return [pipeline_spans_one(e) for e in out]


def run_interleaved(systems: list[dict], texts: list[str], words: list[int], block: int) -> tuple[list, dict]:
    """Time every system on the same blocks of ``block`` sentences, taking turns block by block (in a
    rotating order) so that a busy machine slows them all alike. Per system: batch-1 latency of each
    sentence (if ``b1``), then the block as one batch. Returns rows and the batched outputs."""
    warm = {}
    for sy in systems:  # warm-up (a compiled system compiles here: its time is reported)
        t0 = time.perf_counter()
        for t in texts[:3] if sy["one"] else []:
            sy["one"](t)
        sy["batch"](texts[:block])
        warm[sy["name"]] = time.perf_counter() - t0
    lat = {sy["name"]: [] for sy in systems}
    sec = dict.fromkeys(lat, 0.0)
    outs = {name: [] for name in lat}
    n_blocks = -(-len(texts) // block)
    for k, start in enumerate(range(0, len(texts), block)):
        chunk = texts[start: start + block]
        for sy in systems[k % len(systems):] + systems[: k % len(systems)]:
            if sy["b1"]:
                for t in chunk:
                    t0 = time.perf_counter()
                    sy["one"](t)
                    lat[sy["name"]].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            outs[sy["name"]].extend(sy["batch"](chunk))
            sec[sy["name"]] += time.perf_counter() - t0
        print(f"  block {k + 1}/{n_blocks} done (load avg {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    total = sum(words)
    rows = []
    for sy in systems:
        name, row = sy["name"], {"system": sy["name"], "warmup_s": round(warm[sy["name"]], 1)}
        if lat[name]:
            row.update(b1_words_per_s=total / (sum(lat[name]) / 1000), b1_ms_mean=statistics.fmean(lat[name]),
                       b1_ms_p50=statistics.median(lat[name]))
        row.update(batched_words_per_s=total / sec[name], batched_ms_per_sentence=1000 * sec[name] / len(texts))
        rows.append(row)
    return rows, outs


def plain_forward_system(model: NerModel, tokenizer, texts: list[str], args, device):
    """The bound: the model's plain forward on the pipeline's raw-text ids (tokenised before the
    clock starts), length-sorted batches of ``--batch-size``; no tokenisation, no decoding."""
    ids = {t: tokenizer(t, truncation=True, max_length=512)["input_ids"] for t in texts}
    pad = tokenizer.pad_token_id

    @torch.inference_mode()
    def run(ts):
        order = sorted(range(len(ts)), key=lambda i: len(ids[ts[i]]))
        for k in range(0, len(order), args.batch_size):
            rows = [ids[ts[i]] for i in order[k: k + args.batch_size]]
            width = max(len(r) for r in rows)
            x = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
            m = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
            model(x, m).logits.argmax(-1).cpu()
        return [[] for _ in ts]

    return run


def nerkd_system(folder: Path, args, *, int8: bool = False, precision: str = "fp32", batch_size: int = 0,
                 tokenize: str = "words", compile: bool = False):
    engine = Engine.load(folder, device=args.device, precision=precision, int8=int8,
                         batch_size=batch_size or args.batch_size, max_length=512, stride=128, tokenize=tokenize,
                         compile=compile)

    def run_all(texts):
        return [[(e["start"], e["end"], e["label"]) for e in ents] for ents in engine.predict(texts)]

    return engine, (lambda t: engine.predict([t])), run_all


# -- reference taggers for the agreement analysis ----------------------------------------
@torch.inference_mode()
def word_level_on_raw_tokens(model: NerModel, tokenizer, texts: list[str], device) -> list[list[tuple]]:
    """Same tokenisation and logits as the pipeline (raw text), but one label per nerkd word: the
    label of the first sub-token overlapping the word (what nerkd does, minus its word tokenisation)."""
    out = []
    labels = model.labels.labels
    for t in texts:
        enc = tokenizer(t, return_offsets_mapping=True, truncation=True, return_tensors="pt")
        ids = model(enc["input_ids"].to(device), enc["attention_mask"].to(device)).logits[0].argmax(-1).tolist()
        offsets = enc["offset_mapping"][0].tolist()
        words = split_words(t)
        tags = []
        for _, ws, we in words:
            k = next((i for i, (a, b) in enumerate(offsets) if b > a and b > ws and a < we), None)
            tags.append(labels[ids[k]] if k is not None else "O")
        out.append([(words[a][1], words[b - 1][2], typ) for typ, a, b in spans_of(tags)])
    return out


@torch.inference_mode()
def raw_text_reference(model: NerModel, tokenizer, texts: list[str], device) -> list[list[tuple]]:
    """Independent re-implementation of ``--tokenize text``: the raw text's sub-words (one forward
    per sentence, no windows); a word that starts a whitespace chunk reads the chunk's first
    sub-word, a glued word the first non-empty sub-word overlapping it; argmax."""
    labels = model.labels.labels
    out = []
    for t in texts:
        enc = tokenizer(t, return_offsets_mapping=True, truncation=True, return_tensors="pt")
        ids = model(enc["input_ids"].to(device), enc["attention_mask"].to(device)).logits[0].argmax(-1).tolist()
        offsets = enc["offset_mapping"][0].tolist()
        real = [i for i, w in enumerate(enc.word_ids(0)) if w is not None]
        words = split_words(t)
        tags, prev = [], None
        for _, ws, we in words:
            if ws != prev:
                after = prev if prev is not None else -1
                k = next((i for i in real if offsets[i][1] > after), None)
            else:
                k = next((i for i in real if offsets[i][1] > offsets[i][0] and offsets[i][1] > ws
                          and offsets[i][0] < we), None)
            tags.append(labels[ids[k]] if k is not None else "O")
            prev = we
        out.append([(words[a][1], words[b - 1][2], typ) for typ, a, b in spans_of(tags)])
    return out


@torch.inference_mode()
def word_level_reference(model: NerModel, tokenizer, texts: list[str], device) -> list[list[tuple]]:
    """Independent re-implementation of nerkd's path (words -> is_split_into_words -> first sub-token
    -> argmax), no windows, no batching: checks the engine itself."""
    labels = model.labels.labels
    out = []
    for t in texts:
        words = split_words(t)
        if not words:
            out.append([])
            continue
        enc = tokenizer([w for w, _, _ in words], is_split_into_words=True, truncation=True, return_tensors="pt")
        ids = model(enc["input_ids"].to(device), enc["attention_mask"].to(device)).logits[0].argmax(-1).tolist()
        first = {}
        for pos, w in enumerate(enc.word_ids(0)):
            if w is not None:
                first.setdefault(w, pos)
        tags = [labels[ids[first[i]]] if i in first else "O" for i in range(len(words))]
        out.append([(words[a][1], words[b - 1][2], typ) for typ, a, b in spans_of(tags)])
    return out


def same_input(tokenizer, texts: list[str]) -> list[int]:
    """Sentences for which nerkd's word-split input ids equal the pipeline's raw-text ids."""
    out = []
    for i, t in enumerate(texts):
        words = [w for w, _, _ in split_words(t)]
        if words and tokenizer(t)["input_ids"] == tokenizer(words, is_split_into_words=True)["input_ids"]:
            out.append(i)
    return out


def gold_spans(tokens: list[str], tags: list[str]) -> list[tuple[int, int, str]]:
    """Gold entities (IO, like the models) as character spans of ``detokenize(tokens)``."""
    from nerkd.data.schemes import convert

    ends = [len(detokenize(tokens[: i + 1])) for i in range(len(tokens))]
    starts = [e - len(t) for e, t in zip(ends, tokens, strict=True)]
    return [(starts[a], ends[b - 1], typ) for typ, a, b in spans_of(convert(tags, "IO"))]


def strip_spans(text: str, spans: list[tuple]) -> tuple[list[tuple], int, int]:
    """Pipeline offsets of Metaspace tokens include the space before a word: strip it."""
    out, changed, dropped = [], 0, 0
    for s, e, lab in spans:
        s2, e2 = s, e
        while s2 < e2 and text[s2].isspace():
            s2 += 1
        while e2 > s2 and text[e2 - 1].isspace():
            e2 -= 1
        if s2 == e2:
            dropped += 1
            continue
        changed += (s2, e2) != (s, e)
        out.append((s2, e2, lab))
    return out, changed, dropped


def compare(texts, ref: list[list[tuple]], got: list[list[tuple]]) -> dict:
    """Exact span agreement of ``got`` against ``ref`` and a category for every difference."""
    cats: Counter = Counter()
    matched = n_ref = n_got = 0
    for text, r, g in zip(texts, ref, got, strict=True):
        starts = {s for _, s, _ in split_words(text)}
        ends = {e for _, _, e in split_words(text)}
        rs, gs = set(r), set(g)
        matched += len(rs & gs)
        n_ref += len(rs)
        n_got += len(gs)
        for s, e, lab in rs - gs:
            over = [x for x in gs if x[0] < e and s < x[1]]
            if s not in starts or e not in ends:
                cats["reference span starts/ends inside a word (sub-word aggregation)"] += 1
            elif any((x[0], x[1]) == (s, e) for x in over):
                cats["same span, other label"] += 1
            elif any(x[2] == lab for x in over):
                cats["same label, other word boundaries"] += 1
            elif over:
                cats["overlap with other label and boundaries"] += 1
            else:
                cats["missing (no overlapping span)"] += 1
        for s, e, _ in gs - rs:
            if not any(x[0] < e and s < x[1] for x in rs):
                cats["extra (no overlapping reference span)"] += 1
    agree = 2 * matched / (n_ref + n_got) if n_ref + n_got else 1.0
    return {"reference_spans": n_ref, "spans": n_got, "matched": matched, "agreement": agree,
            "of_reference": matched / n_ref if n_ref else 1.0, "of_spans": matched / n_got if n_got else 1.0,
            "differences": dict(cats.most_common())}


# -- main --------------------------------------------------------------------------------
def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sents, _ = read_sentences(args.data, "conll")
    all_texts = [detokenize(s.tokens) for s in sents]
    texts = all_texts[args.offset: args.offset + args.sentences]
    n_words = sum(len(split_words(t)) for t in texts)
    info = {"cpu": _cpu(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": args.device, "load_avg_start": os.getloadavg(), "sentences": len(texts), "words": n_words,
            "args": {k: str(v) for k, v in vars(args).items()}}
    print(f"{len(texts)} sentences, {n_words} words (nerkd words), from {args.data}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="nerkd-bench-"))
    base = args.model
    if base is None:
        base = work / "base"
        tok_s, vocab = build_random_model(args, all_texts, base)
        info["tokenizer"] = {"trained_on_sentences": len(all_texts), "vocab_asked": args.vocab, "vocab": vocab,
                             "seconds": round(tok_s, 1)}
        print(f"tokenizer: {vocab} pieces (asked {args.vocab}) in {tok_s:.1f} s", file=sys.stderr)
    student = args.student
    if student is None:
        student = work / "student"
        build_student(base, student, args.student_layers, args.student_heads)
    model = NerModel.load(base).to(device)
    tokenizer = load_tokenizer(base)
    info["model"] = {"path": str(base), "parameters": model.num_parameters(), "layers": model.num_layers}
    raw_ids = sum(len(tokenizer(t)["input_ids"]) for t in texts)
    word_ids = sum(len(tokenizer([w for w, _, _ in split_words(t)], is_split_into_words=True)["input_ids"])
                   for t in texts)
    info["sub_tokens"] = {"pipeline_raw_text": raw_ids, "nerkd_word_split": word_ids,
                          "ratio": round(word_ids / raw_ids, 3)}
    smodel = NerModel.load(student)
    info["student"] = {"path": str(student), "parameters": smodel.num_parameters(), "heads": smodel.heads}
    del smodel

    from transformers import pipeline

    pipe = pipeline("token-classification", model=model.encoder_model, tokenizer=tokenizer,
                    aggregation_strategy="simple", device=device)
    systems = [{"name": "pipeline (simple)", "one": pipe, "b1": not args.skip_pipeline_batch1,
                "batch": lambda ts: [pipeline_spans(o) for o in pipe(ts, batch_size=args.batch_size)]}]
    plain_run = plain_forward_system(model, tokenizer, texts, args, device)
    systems.append({"name": "plain forward fp32 (raw-text ids; no tokenising, no decoding)", "one": None,
                    "b1": False, "batch": plain_run})
    specs = [("nerkd fp32", base, False, "fp32"), ("nerkd bf16 (CPU autocast)", base, False, "bf16"),
             ("nerkd int8", base, True, "fp32"), ("nerkd student fp32", student, False, "fp32"),
             ("nerkd student int8", student, True, "fp32")]
    if args.device == "cuda":
        specs = [("nerkd fp32", base, False, "fp32"), ("nerkd bf16", base, False, "bf16"),
                 ("nerkd student fp32", student, False, "fp32"), ("nerkd student bf16", student, False, "bf16")]
    specs = [(*x, 0, "words") for x in specs]
    text_spec = ("nerkd fp32 --tokenize text", base, False, "fp32", 0, "text")
    specs.insert(1, text_spec)
    if args.device == "cuda":
        specs.insert(3, ("nerkd bf16 --tokenize text", base, False, "bf16", 0, "text"))
    if args.rows == "fp32":
        specs = [specs[0], text_spec, ("nerkd fp32 --compile", base, False, "fp32", 0, "words")]
    if args.big_batch:
        specs.append((f"nerkd fp32, batch {args.big_batch}", base, False, "fp32", args.big_batch, "words"))
        if args.device == "cuda":
            specs.append((f"nerkd bf16, batch {args.big_batch}", base, False, "bf16", args.big_batch, "words"))
    for name, folder, int8, prec, bs, tokenize in specs:
        _, one, run_all = nerkd_system(folder, args, int8=int8, precision=prec, batch_size=bs, tokenize=tokenize,
                                       compile="--compile" in name)
        systems.append({"name": name, "one": one, "batch": run_all, "b1": not bs and args.rows == "all"})
    rows, outs = run_interleaved(systems, texts, [len(split_words(t)) for t in texts], args.block)
    outs["pipeline"] = outs["pipeline (simple)"]
    info["load_avg_end"] = os.getloadavg()

    same = {f"{a} vs nerkd fp32": compare(texts, outs["nerkd fp32"], outs[a])
            for a in ("nerkd fp32 --compile",) if a in outs}
    if args.skip_agreement:
        return finish(rows, same, info, work, args)
    # agreement
    _, _, run_base = nerkd_system(base, args)
    agreement, offsets = agreement_suite(model, tokenizer, texts, outs["pipeline"], outs["nerkd fp32"], device,
                                         pipe, run_base, args.batch_size)
    info["pipeline_offsets"] = offsets
    agreement.update(same)
    text_out = outs["nerkd fp32 --tokenize text"]
    agreement.update(text_agreement(model, tokenizer, texts, outs["pipeline"], outs["nerkd fp32"], text_out,
                                    device, pipe, args.batch_size))
    for a, b in (("nerkd int8", "nerkd fp32"), ("nerkd bf16 (CPU autocast)", "nerkd fp32"),
                 ("nerkd student int8", "nerkd student fp32"),
                 ("nerkd bf16", "nerkd fp32"), ("nerkd student bf16", "nerkd student fp32")):
        if a in outs:
            agreement[f"{a} vs {b}"] = compare(texts, outs[b], outs[a])
    if args.train_steps and args.model is None:
        small = work / "trained_small"
        loss = train_small_model(args, tokenizer, sents, small)
        smodel, stok = NerModel.load(small).to(device), load_tokenizer(small)
        info["trained_small"] = {"steps": args.train_steps, "final_loss": round(loss, 4),
                                 "parameters": smodel.num_parameters(), "layers": smodel.num_layers,
                                 "hidden": smodel.hidden_size}
        spipe = pipeline("token-classification", model=smodel.encoder_model, tokenizer=stok,
                         aggregation_strategy="simple", device=device)
        p_out = [pipeline_spans(o) for o in spipe(texts, batch_size=args.batch_size)]
        _, _, run_all = nerkd_system(small, args)
        n_out = run_all(texts)
        t_out = nerkd_system(small, args, tokenize="text")[2](texts)
        more, info["trained_small"]["offsets"] = agreement_suite(smodel, stok, texts, p_out, n_out, device,
                                                                 spipe, run_all, args.batch_size)
        more.update(text_agreement(smodel, stok, texts, p_out, n_out, t_out, device, spipe, args.batch_size))
        if args.device == "cpu":
            _, _, run_q = nerkd_system(small, args, int8=True)
            more["nerkd int8 vs nerkd fp32"] = compare(texts, n_out, run_q(texts))
        gold = [gold_spans(s.tokens, s.tags) for s in sents[args.offset: args.offset + args.sentences]]
        raw_word = word_level_on_raw_tokens(smodel, stok, texts, device)
        stripped = [strip_spans(t, o)[0] for t, o in zip(texts, p_out, strict=True)]
        more.update({f"{k} vs gold (span F1)": compare(texts, gold, v) for k, v in
                     (("pipeline (simple)", stripped), ("word-level labels on pipeline tokens", raw_word),
                      ("nerkd", n_out), ("nerkd --tokenize text", t_out))})
        agreement.update({f"[trained small] {k}": v for k, v in more.items()})
    return finish(rows, agreement, info, work, args)


def finish(rows: list[dict], agreement: dict, info: dict, work: Path, args) -> dict:
    report(rows, agreement, info)
    result = {"info": info, "rows": rows, "agreement": agreement}
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result


def agreement_suite(model, tokenizer, texts, pipe_out, nerkd_out, device, pipe, run_nerkd,
                    batch_size: int) -> tuple[dict, dict]:
    """nerkd vs the pipeline; the same difference split into its two causes; and a control run on
    the words joined by single spaces, where both systems see the same sub-word ids."""
    piped = [strip_spans(t, o) for t, o in zip(texts, pipe_out, strict=True)]
    pipe_spans = [p for p, _, _ in piped]
    raw_word = word_level_on_raw_tokens(model, tokenizer, texts, device)
    first_pipe = pipeline_first(pipe)
    first_spans = [strip_spans(t, pipeline_spans(o))[0]
                   for t, o in zip(texts, first_pipe(texts, batch_size=batch_size), strict=True)]
    spaced = [" ".join(w for w, _, _ in split_words(t)) for t in texts]
    spaced = [spaced[i] for i in same_input(tokenizer, spaced)]   # (elisions re-split differently: left out)
    spaced_pipe = [strip_spans(t, [pipeline_spans_one(e) for e in o])[0]
                   for t, o in zip(spaced, pipe(spaced, batch_size=batch_size), strict=True)]
    info = {"spans_with_space_stripped": sum(c for _, c, _ in piped),
            "whitespace_only_spans_dropped": sum(d for _, _, d in piped),
            "control_sentences_with_same_input_ids": f"{len(spaced)}/{len(texts)}"}
    return {
        "nerkd vs pipeline (simple)": compare(texts, pipe_spans, nerkd_out),
        "nerkd vs pipeline (first: one label per pipeline word)": compare(texts, first_spans, nerkd_out),
        "  cause 1 only: word-level labels on pipeline tokens vs pipeline": compare(texts, pipe_spans, raw_word),
        "  cause 2 only: nerkd vs word-level labels on pipeline tokens": compare(texts, raw_word, nerkd_out),
        "  control: nerkd vs pipeline on words joined by spaces (same sub-word ids)":
            compare(spaced, spaced_pipe, run_nerkd(spaced)),
        "nerkd vs independent word-level reference (checks the engine)":
            compare(texts, word_level_reference(model, tokenizer, texts, device), nerkd_out),
    }, info


def text_agreement(model, tokenizer, texts, pipe_out, words_out, text_out, device, pipe,
                   batch_size: int) -> dict:
    """``--tokenize text`` against the pipeline, against nerkd's default, and against an
    independent re-implementation (which checks the engine)."""
    pipe_spans = [strip_spans(t, o)[0] for t, o in zip(texts, pipe_out, strict=True)]
    first_spans = [strip_spans(t, pipeline_spans(o))[0]
                   for t, o in zip(texts, pipeline_first(pipe)(texts, batch_size=batch_size), strict=True)]
    return {
        "nerkd --tokenize text vs pipeline (simple)": compare(texts, pipe_spans, text_out),
        "nerkd --tokenize text vs pipeline (first)": compare(texts, first_spans, text_out),
        "nerkd --tokenize text vs nerkd (words)": compare(texts, words_out, text_out),
        "nerkd --tokenize text vs independent raw-text reference (checks the engine)":
            compare(texts, raw_text_reference(model, tokenizer, texts, device), text_out),
    }


def pipeline_first(pipe):
    """The same model and tokenizer as ``pipe``, with ``aggregation_strategy="first"``."""
    from transformers import pipeline

    return pipeline("token-classification", model=pipe.model, tokenizer=pipe.tokenizer,
                    aggregation_strategy="first", device=pipe.device)


def train_small_model(args, tokenizer, sents, folder: Path) -> float:
    """A small IO tagger (2 layers, hidden 128) trained for ``--train-steps`` on the sentences NOT
    benchmarked (word-split input, like camembert-ner's fine-tuning): labels that mean something."""
    from nerkd.data.encode import encode
    from nerkd.data.schemes import convert

    keep = [s for i, s in enumerate(sents) if not args.offset <= i < args.offset + args.sentences]
    l2i = {lab: i for i, lab in enumerate(IO_LABELS)}
    tags = [[l2i[t] for t in convert(s.tags, "IO")] for s in keep]
    windows = encode(tokenizer, [s.tokens for s in keep], tags, 128, 32)
    return train_windows(windows, tokenizer, args.train_steps, args.seed, folder)


def train_windows(windows, tokenizer, steps: int, seed: int, folder: Path) -> float:
    """Train a small IO tagger (2 layers, hidden 128, from scratch) on labelled ``windows``; save it."""
    import torch.nn.functional as F

    from nerkd.data.encode import bucket_batches, collate
    from nerkd.models.scratch import tiny_config

    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), IO_LABELS, layers=2, hidden=128, heads=4, max_positions=512,
                         pad_token_id=tokenizer.pad_token_id)
    model = NerModel.from_config(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    batches = bucket_batches([len(w) for w in windows], 32, shuffle=True, seed=seed)
    start, losses = time.perf_counter(), []
    for step in range(steps):
        b = collate([windows[i] for i in batches[step % len(batches)]], tokenizer.pad_token_id)
        logits = model(b["input_ids"], b["attention_mask"]).logits
        loss = F.cross_entropy(logits.flatten(0, 1), b["labels"].flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"  trained small model: {steps} steps in {time.perf_counter() - start:.0f} s, "
          f"loss {statistics.fmean(losses[:20]):.3f} -> {statistics.fmean(losses[-20:]):.3f}", file=sys.stderr)
    model.eval().save(folder, tokenizer=tokenizer)
    return statistics.fmean(losses[-20:])


def report(rows: list[dict], agreement: dict, info: dict) -> None:
    print(f"\nmachine: {info['cpu']}, {info['threads']} torch threads, torch {info['torch']}, device {info['device']}, "
          f"load avg start {info['load_avg_start'][0]:.2f} / end {info['load_avg_end'][0]:.2f}")
    print(f"data: {info['sentences']} sentences, {info['words']} words; model {info['model']['parameters']:,} params "
          f"({info['model']['layers']} layers); student {info['student']['parameters']:,} params, "
          f"heads {info['student']['heads']}")
    if "tokenizer" in info:
        print(f"tokenizer: {info['tokenizer']}")
    print(f"sub-word tokens fed to the model: {info['sub_tokens']}")
    print(f"pipeline offsets: {info.get('pipeline_offsets', 'not computed')}")
    if "trained_small" in info:
        print(f"trained small model (agreement only): {info['trained_small']}")
    pbat = rows[0]
    pb = pbat if pbat.get("b1_words_per_s") else None
    print("\n| system | batch-1 words/s | batch-1 ms/sentence (mean / p50) | batched words/s | batched ms/sentence "
          "| batch-1 x pipeline batch-1 | batched x pipeline batch-1 | batched x pipeline batched | warm-up s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b1 = r.get("b1_words_per_s")
        p50 = r.get("b1_ms_p50")
        lat = f"{r['b1_ms_mean']:.1f} / {p50:.1f}" if p50 else (f"{r['b1_ms_mean']:.1f}" if b1 else "-")
        x1 = f"{b1 / pb['b1_words_per_s']:.2f}" if (b1 and pb) else "-"
        xb1 = f"{r['batched_words_per_s'] / pb['b1_words_per_s']:.2f}" if pb else "-"
        xb = r["batched_words_per_s"] / pbat["batched_words_per_s"]
        b1s = f"{b1:,.0f}" if b1 else "-"
        print(f"| {r['system']} | {b1s} | {lat} | {r['batched_words_per_s']:,.0f} | "
              f"{r['batched_ms_per_sentence']:.1f} | {x1} | {xb1} | {xb:.2f} | {r['warmup_s']} |")
    print("\n| comparison | reference spans | spans | exact matches | agreement (F1) | % of reference | % of spans |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, a in agreement.items():
        print(f"| {name} | {a['reference_spans']} | {a['spans']} | {a['matched']} | {100 * a['agreement']:.2f}% | "
              f"{100 * a['of_reference']:.2f}% | {100 * a['of_spans']:.2f}% |")
    print("\ncause 1 = the pipeline's sub-word aggregation (labels per sub-token) vs one label per word; "
          "cause 2 = sub-word ids: the pipeline tokenises the raw text (`Lyon.` -> `▁Lyon` `.`), nerkd each "
          "word (`▁Lyon` `▁.`, as in training)")
    print("\ndifferences by category (count of reference spans not matched; extra = spans with no reference overlap):")
    for name, a in agreement.items():
        if a["differences"]:
            print(f"- {name}: " + "; ".join(f"{k}: {v}" for k, v in a["differences"].items()))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
