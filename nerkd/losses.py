"""Distillation losses as pure functions (TextBrewer style: tensors in, scalar out, no state).

Shapes: ``B`` rows, ``T`` sub-word positions, ``L`` labels (``Ls`` student, ``Lt`` teacher),
``H`` hidden size, ``C`` columns of the shared type space (``["O", *shared types]``, see
:func:`nerkd.data.labels.type_mapping`). Masks are bool ``[B, T]``; label tensors use ``-100``
for ignored positions. Every loss computes in float32 (softmax, log-sum-exp, KL, cosine), so
they are safe under autocast (bf16/fp16), and none of them synchronises with the host (no
``.item()``, no data-dependent shapes), so a training step stays asynchronous on GPU and
compiles with static shapes. A batch with nothing to average over gives 0, never NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nerkd.data.schemes import IGNORE

_NEG = -1e9  # "log 0" that keeps gradients finite (never -inf)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values[B, T]`` over ``mask[B, T]``; 0 when the mask is empty. Masked-out
    positions are selected away (not multiplied by 0), so a NaN/inf in padding cannot leak in."""
    mask = mask.bool()
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp(min=1).to(values.dtype)


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token cross-entropy with gold labels.

    logits ``[B, T, L]``, labels ``[B, T]`` (``-100`` ignored) -> scalar: mean over labelled
    positions (0 when there are none).
    """
    n = logits.shape[-1]
    total = F.cross_entropy(logits.float().reshape(-1, n), labels.reshape(-1), ignore_index=IGNORE,
                            reduction="sum")
    return total / (labels != IGNORE).sum().clamp(min=1).to(total.dtype)


def compact_words(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move each row's labelled positions (first sub-tokens of words) to the front, in order.

    logits ``[B, T, L]``, labels ``[B, T]`` -> ``(emissions [B, T, L] float32, tags [B, T],
    mask [B, T] bool)`` where ``mask`` is a prefix (the row's words) and the rest is padding.
    The width stays ``T`` so that no host synchronisation is needed.
    """
    keep = labels != IGNORE
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices          # [B, T]
    emissions = logits.float().gather(1, order.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    tags = labels.gather(1, order).clamp(min=0)
    mask = keep.gather(1, order)
    return emissions, tags, mask


def crf_nll(crf, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the gold tag sequences under a linear-chain CRF.

    ``crf`` is a ``torchcrf.CRF`` (``transitions [L, L]``, ``start_transitions [L]``,
    ``end_transitions [L]``); logits ``[B, T, L]`` are sub-token emissions and labels ``[B, T]``
    carry a tag on the first sub-token of each word (``-100`` elsewhere). Each row is compacted
    to its word sequence (:func:`compact_words`), the CRF runs over words, and the result is the
    mean NLL over rows that have at least one word (0 when none has). Float32 throughout.
    """
    emissions, tags, mask = compact_words(logits, labels)
    b, t, _ = emissions.shape
    trans = crf.transitions.float()
    start, end = crf.start_transitions.float(), crf.end_transitions.float()
    rows = torch.arange(b, device=emissions.device)
    # gold path score
    emit = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)                      # [B, T]
    score = start[tags[:, 0]] + torch.where(mask, emit, 0.0).sum(1)
    if t > 1:
        score = score + torch.where(mask[:, 1:], trans[tags[:, :-1], tags[:, 1:]], 0.0).sum(1)
    lengths = mask.sum(1)
    last = tags[rows, (lengths - 1).clamp(min=0)]
    score = score + end[last]
    # log partition (forward algorithm); positions past a row's end leave its state unchanged
    alpha = start + emissions[:, 0]                                                  # [B, L]
    for i in range(1, t):
        nxt = torch.logsumexp(alpha.unsqueeze(2) + trans + emissions[:, i].unsqueeze(1), dim=1)
        alpha = torch.where(mask[:, i : i + 1], nxt, alpha)
    log_z = torch.logsumexp(alpha + end, dim=1)
    has_words = lengths > 0
    return torch.where(has_words, log_z - score, 0.0).sum() / has_words.sum().clamp(min=1).float()


def _column_log_probs(log_probs: torch.Tensor, cols: torch.Tensor, n_shared: int) -> torch.Tensor:
    """log of the probability mass of each shared column: ``[B, T, L]`` -> ``[B, T, C]``.

    ``cols[L]`` gives each label's column; ``-1`` drops the label (its mass goes nowhere).
    """
    member = F.one_hot(cols.clamp(min=0), n_shared).bool() & (cols >= 0).unsqueeze(1)  # [L, C]
    bias = torch.where(member, 0.0, _NEG).to(log_probs.dtype)
    return torch.logsumexp(log_probs.unsqueeze(-1) + bias, dim=-2)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, temperature: float,
            student_cols: torch.Tensor, teacher_cols: torch.Tensor, n_shared: int) -> torch.Tensor:
    """KL(teacher || student) over the shared type space, softened by ``temperature``, times T².

    student_logits ``[B, T, Ls]``, teacher_logits ``[B, T, Lt]``, mask ``[B, T]`` (positions that
    get a KD signal), student_cols ``[Ls]`` / teacher_cols ``[Lt]`` (long: label -> column in
    ``0..n_shared-1``, teacher ``-1`` = dropped). Both distributions are softmaxed at
    temperature T then summed per column (so IO, BIO and BIOES compare at the type level); the
    teacher's dropped mass is removed and its columns renormalised. Mean over masked positions.
    """
    temp = float(temperature)
    log_p = F.log_softmax(student_logits.float() / temp, dim=-1)
    log_q = F.log_softmax(teacher_logits.float() / temp, dim=-1)
    log_p = _column_log_probs(log_p, student_cols.to(log_p.device), n_shared)
    log_q = _column_log_probs(log_q, teacher_cols.to(log_q.device), n_shared)
    log_q = log_q - torch.logsumexp(log_q, dim=-1, keepdim=True)                   # renormalise
    q = log_q.exp()
    kl = (q * (log_q - log_p)).sum(-1)                                               # [B, T]
    return _masked_mean(kl, mask) * temp * temp


def hidden_loss(student_states: Sequence[torch.Tensor], teacher_states: Sequence[torch.Tensor],
                mask: torch.Tensor, projections: nn.ModuleList | None = None) -> torch.Tensor:
    """Mean over layer pairs of (1 - cosine similarity) between hidden states.

    student_states: list of ``[B, T, Hs]``; teacher_states: list of ``[B, T, Ht]`` (same length,
    pair ``i`` compared); mask ``[B, T]`` (attention mask: padding ignored). When ``Hs != Ht``
    ``projections[i]`` (``nn.Linear(Hs, Ht)``, trained with the student) maps student states
    first. Each pair is averaged over masked positions, then the pairs are averaged.
    """
    if len(student_states) != len(teacher_states):
        raise ValueError(f"{len(student_states)} student states vs {len(teacher_states)} teacher states")
    if not student_states:
        return mask.new_zeros((), dtype=torch.float32)
    losses = []
    for i, (s, t) in enumerate(zip(student_states, teacher_states, strict=True)):
        if projections is not None:
            s = projections[i](s)
        if s.shape[-1] != t.shape[-1]:
            raise ValueError(f"pair {i}: hidden sizes differ ({s.shape[-1]} vs {t.shape[-1]}); give projections")
        cos = F.cosine_similarity(s.float(), t.float(), dim=-1, eps=1e-8)            # [B, T]
        losses.append(_masked_mean(1.0 - cos, mask))
    return torch.stack(losses).mean()


class TransitionPairs(NamedTuple):
    """Which student CRF scores are compared with which teacher scores (index tensors, long)."""

    student_trans: torch.Tensor   # [K, 2] (from, to) student label ids
    teacher_trans: torch.Tensor   # [K, 2] teacher label ids
    student_start: torch.Tensor   # [S]
    teacher_start: torch.Tensor   # [S]
    student_end: torch.Tensor     # [E]
    teacher_end: torch.Tensor     # [E]

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.student_trans.shape[0] + self.student_start.shape[0] + self.student_end.shape[0])


def transition_pairs(teacher, student, rename: Mapping[str, str] | None = None) -> TransitionPairs | None:
    """Map the student's CRF scores onto the teacher's for two :class:`~nerkd.data.labels.LabelSpace`.

    ``None`` when both spaces are equal (compare everything directly). Same scheme: labels are
    matched by name (after ``rename``, teacher type -> data type). Different schemes: each
    transition ``a -> b`` valid in the student's scheme is converted as the two-tag sequence
    ``[a, b]`` into the teacher's scheme (IO teacher, BIO student: ``O -> B-PER`` pairs with
    ``O -> I-PER``, ``B-PER -> I-PER`` with ``I-PER -> I-PER``); exact for an IO teacher, an
    approximation for BIO <-> BIOES (``I -> I`` inside a longer entity). Transitions involving a
    type the other side lacks are left out.
    """
    from nerkd.data.schemes import convert, split_tag, transition_masks

    if tuple(teacher.labels) == tuple(student.labels):
        return None
    to_teacher_type = {v: k for k, v in (rename or {}).items()}
    t_ids = teacher.label2id

    def teacher_id(tag: str) -> int | None:
        prefix, etype = split_tag(tag)
        return t_ids.get("O" if etype is None else f"{prefix}-{to_teacher_type.get(etype, etype)}")

    same_scheme = teacher.scheme == student.scheme

    def as_teacher(tags: list[str]) -> list[int | None]:
        return [teacher_id(t) for t in (tags if same_scheme else convert(tags, teacher.scheme))]

    start_ok, trans_ok, end_ok = transition_masks(student)
    s_labels = student.labels
    st, tt, ss, ts, se, te = [], [], [], [], [], []
    for i, a in enumerate(s_labels):
        for j, b in enumerate(s_labels):
            if trans_ok[i, j]:
                ta, tb = as_teacher([a, b])
                if ta is not None and tb is not None:
                    st.append((i, j))
                    tt.append((ta, tb))
        if start_ok[i] and (t := as_teacher([a])[0]) is not None:
            ss.append(i)
            ts.append(t)
        if end_ok[i] and (t := as_teacher([a])[-1]) is not None:
            se.append(i)
            te.append(t)

    def long(x, shape):
        return torch.tensor(x, dtype=torch.long).reshape(shape)

    return TransitionPairs(long(st, (-1, 2)), long(tt, (-1, 2)), long(ss, (-1,)), long(ts, (-1,)),
                           long(se, (-1,)), long(te, (-1,)))


def crf_transition_loss(student_crf, teacher_crf, pairs: TransitionPairs | None = None) -> torch.Tensor:
    """Mean squared difference between student and teacher CRF scores (transitions, start, end).

    Both CRFs are ``torchcrf.CRF``. With ``pairs`` None the label spaces must be equal and all
    ``L*L + 2L`` scores are compared; otherwise only the matched scores of
    :func:`transition_pairs`. The teacher side is detached. Returns 0 when nothing matches.
    """
    s_all = (student_crf.transitions, student_crf.start_transitions, student_crf.end_transitions)
    t_all = tuple(x.detach() for x in (teacher_crf.transitions, teacher_crf.start_transitions,
                                          teacher_crf.end_transitions))
    if pairs is None:
        if s_all[0].shape != t_all[0].shape:
            raise ValueError(f"CRF sizes differ ({s_all[0].shape[0]} vs {t_all[0].shape[0]} tags); give pairs")
        s = torch.cat([x.float().reshape(-1) for x in s_all])
        t = torch.cat([x.float().reshape(-1) for x in t_all])
    else:
        dev = s_all[0].device
        p = [x.to(dev) for x in pairs]
        s = torch.cat([s_all[0][p[0][:, 0], p[0][:, 1]], s_all[1][p[2]], s_all[2][p[4]]]).float()
        t = torch.cat([t_all[0][p[1][:, 0], p[1][:, 1]], t_all[1][p[3]], t_all[2][p[5]]]).float()
    if s.numel() == 0:
        return s_all[0].new_zeros((), dtype=torch.float32)
    return F.mse_loss(s, t)
