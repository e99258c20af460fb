"""The distillation losses on hand-made tensors, checked against values computed by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from nerkd.data.labels import LabelSpace, type_mapping
from nerkd.losses import (
    ce_loss,
    compact_words,
    crf_nll,
    crf_transition_loss,
    hidden_loss,
    kd_loss,
    transition_pairs,
)

IO = LabelSpace(("O", "I-PER"))
BIO = LabelSpace(("O", "B-PER", "I-PER"))
BIOES = LabelSpace(("O", "B-PER", "I-PER", "E-PER", "S-PER"))


def logits_of(*probs: list[float], temperature: float = 1.0) -> torch.Tensor:
    """Logits whose softmax at ``temperature`` is each row of ``probs``: shape [1, T, L]."""
    return torch.tensor([[[temperature * math.log(p) for p in row] for row in probs]])


def cols(teacher: LabelSpace, student: LabelSpace, **kw):
    m = type_mapping(teacher, student, **kw)
    return torch.tensor(m.student_cols), torch.tensor(m.teacher_cols), len(m.shared)


# -- cross-entropy ------------------------------------------------------------------------------

def test_ce_of_uniform_logits_is_log_of_label_count():
    labels = torch.tensor([[0, 3, -100], [2, -100, 1]])
    assert ce_loss(torch.zeros(2, 3, 5), labels).item() == pytest.approx(math.log(5))


def test_ce_ignores_unlabelled_positions():
    logits = torch.zeros(1, 3, 2)
    logits[0, 1] = torch.tensor([50.0, -50.0])       # ignored position: would cost 100 if counted
    logits[0, 0] = torch.tensor([math.log(3), 0.0])  # p(label 0) = 3/4
    labels = torch.tensor([[0, -100, -100]])
    labels_wrong = torch.tensor([[0, 1, -100]])
    assert ce_loss(logits, labels).item() == pytest.approx(-math.log(0.75), rel=1e-5)
    assert ce_loss(logits, labels_wrong).item() > 10


def test_ce_with_no_label_is_zero_not_nan():
    out = ce_loss(torch.randn(2, 4, 3), torch.full((2, 4), -100))
    assert out.item() == 0.0


# -- CRF negative log-likelihood ---------------------------------------------------------------

def _brute_force_nll(emissions, tags, trans, start, end) -> float:
    n = emissions.shape[1]

    def score(path):
        s = start[path[0]] + emissions[0, path[0]] + end[path[-1]]
        for k in range(1, len(path)):
            s += trans[path[k - 1], path[k]] + emissions[k, path[k]]
        return float(s)

    log_z = math.log(sum(math.exp(score(p)) for p in itertools.product(range(n), repeat=len(tags))))
    return log_z - score(tags)


def test_crf_nll_matches_enumeration_over_words_only():
    from torchcrf import CRF

    torch.manual_seed(0)
    crf = CRF(3, batch_first=True)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    logits = torch.randn(3, 6, 3)
    labels = torch.full((3, 6), -100)
    labels[0, [1, 2, 4]] = torch.tensor([1, 2, 0])    # 3 words, sub-tokens in between ignored
    labels[1, [1, 5]] = torch.tensor([2, 2])          # 2 words
    # row 2 has no word: it must not count
    expected = []
    for b in range(2):
        pos = (labels[b] != -100).nonzero().squeeze(1)
        expected.append(_brute_force_nll(logits[b, pos], labels[b, pos].tolist(), crf.transitions.detach(),
                                         crf.start_transitions.detach(), crf.end_transitions.detach()))
    got = crf_nll(crf, logits, labels)
    assert got.item() == pytest.approx(sum(expected) / 2, rel=1e-5)
    got.backward()
    assert crf.transitions.grad is not None and torch.isfinite(crf.transitions.grad).all()


def test_compact_words_keeps_order_and_prefix_mask():
    labels = torch.tensor([[-100, 4, -100, 5, 6]])
    logits = torch.arange(5.0).reshape(1, 5, 1)
    emissions, tags, mask = compact_words(logits, labels)
    assert tags[0, :3].tolist() == [4, 5, 6]
    assert emissions[0, :3, 0].tolist() == [1.0, 3.0, 4.0]
    assert mask[0].tolist() == [True, True, True, False, False]


# -- KD -----------------------------------------------------------------------------------------

def test_kd_of_identical_distributions_is_zero():
    s_cols, t_cols, n = cols(BIO, BIO)
    logits = torch.randn(2, 4, 3)
    assert kd_loss(logits, logits.clone(), torch.ones(2, 4, dtype=torch.bool), 2.0, s_cols, t_cols, n).item() \
        == pytest.approx(0.0, abs=1e-6)


def test_kd_of_known_distributions_times_t_squared():
    s_cols, t_cols, n = cols(IO, IO)
    q, p = [0.5, 0.5], [0.25, 0.75]
    kl = sum(qi * math.log(qi / pi) for qi, pi in zip(q, p, strict=True))
    mask = torch.ones(1, 1, dtype=torch.bool)
    for temp in (1.0, 2.0):
        got = kd_loss(logits_of(p, temperature=temp), logits_of(q, temperature=temp), mask, temp, s_cols, t_cols, n)
        assert got.item() == pytest.approx(kl * temp * temp, rel=1e-5)


def test_kd_respects_the_mask():
    s_cols, t_cols, n = cols(IO, IO)
    q, p = [0.5, 0.5], [0.25, 0.75]
    kl = sum(qi * math.log(qi / pi) for qi, pi in zip(q, p, strict=True))
    student = logits_of(p, [0.01, 0.99], p)
    teacher = logits_of(q, [0.99, 0.01], q)   # the middle token disagrees wildly but is masked out
    mask = torch.tensor([[True, False, True]])
    assert kd_loss(student, teacher, mask, 1.0, s_cols, t_cols, n).item() == pytest.approx(kl, rel=1e-5)
    empty = torch.zeros(1, 3, dtype=torch.bool)
    assert kd_loss(student, teacher, empty, 1.0, s_cols, t_cols, n).item() == 0.0


@pytest.mark.parametrize("student_space,student_probs", [
    (BIO, [0.2, 0.5, 0.3]),
    (BIOES, [0.2, 0.1, 0.2, 0.3, 0.2]),
])
def test_kd_io_teacher_vs_marginalised_student(student_space, student_probs):
    s_cols, t_cols, n = cols(IO, student_space)
    mask = torch.ones(1, 1, dtype=torch.bool)
    teacher = logits_of([0.2, 0.8], temperature=2.0)
    same = kd_loss(logits_of(student_probs, temperature=2.0), teacher, mask, 2.0, s_cols, t_cols, n)
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    # a student putting more mass on O is penalised by the type-level KL
    other = [0.6] + [0.4 / (len(student_space) - 1)] * (len(student_space) - 1)
    kl = 0.2 * math.log(0.2 / 0.6) + 0.8 * math.log(0.8 / 0.4)
    got = kd_loss(logits_of(other, temperature=2.0), teacher, mask, 2.0, s_cols, t_cols, n)
    assert got.item() == pytest.approx(kl * 4, rel=1e-5)


def test_kd_teacher_only_type_outside_or_dropped():
    teacher_space = LabelSpace(("O", "I-PER", "I-MISC"))
    t = logits_of([0.3, 0.3, 0.4])
    mask = torch.ones(1, 1, dtype=torch.bool)
    # outside: MISC folds into O -> teacher (0.7, 0.3)
    s_cols, t_cols, n = cols(teacher_space, IO, teacher_only="outside")
    assert kd_loss(logits_of([0.7, 0.3]), t, mask, 1.0, s_cols, t_cols, n).item() == pytest.approx(0, abs=1e-6)
    # ignore: MISC dropped, teacher renormalised -> (0.5, 0.5)
    s_cols, t_cols, n = cols(teacher_space, IO, teacher_only="ignore")
    assert t_cols.tolist() == [0, 1, -1]
    assert kd_loss(logits_of([0.5, 0.5]), t, mask, 1.0, s_cols, t_cols, n).item() == pytest.approx(0, abs=1e-6)
    assert kd_loss(logits_of([0.7, 0.3]), t, mask, 1.0, s_cols, t_cols, n).item() > 0.05


def test_kd_is_float32_and_finite_under_low_precision_inputs():
    s_cols, t_cols, n = cols(IO, BIO)
    s = (torch.randn(2, 5, 3) * 30).bfloat16().requires_grad_()
    t = (torch.randn(2, 5, 2) * 30).bfloat16()
    out = kd_loss(s, t, torch.ones(2, 5, dtype=torch.bool), 2.5, s_cols, t_cols, n)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    out.backward()
    assert torch.isfinite(s.grad.float()).all()


# -- hidden states ------------------------------------------------------------------------------

def test_hidden_cosine_identical_orthogonal_opposite():
    a = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    ones = torch.ones(1, 2, dtype=torch.bool)
    assert hidden_loss([a], [a * 3], ones).item() == pytest.approx(0.0, abs=1e-6)
    ortho = torch.tensor([[[0.0, 5.0], [1.0, 0.0]]])
    assert hidden_loss([a], [ortho], ones).item() == pytest.approx(1.0, abs=1e-6)
    assert hidden_loss([a], [-a], ones).item() == pytest.approx(2.0, abs=1e-6)
    # two pairs: mean of 0 and 1
    assert hidden_loss([a, a], [a, ortho], ones).item() == pytest.approx(0.5, abs=1e-6)


def test_hidden_mask_ignores_padding():
    a = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    b = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])   # the second position (padding) is opposite
    assert hidden_loss([a], [b], torch.tensor([[1, 0]]).bool()).item() == pytest.approx(0.0, abs=1e-6)
    assert hidden_loss([a], [b], torch.tensor([[1, 1]]).bool()).item() == pytest.approx(1.0, abs=1e-6)


def test_hidden_projection_maps_student_width():
    proj = nn.ModuleList([nn.Linear(2, 3, bias=False)])
    with torch.no_grad():
        proj[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    s = torch.tensor([[[1.0, 2.0]]])
    t = torch.tensor([[[2.0, 4.0, 0.0]]])
    assert hidden_loss([s], [t], torch.ones(1, 1, dtype=torch.bool), proj).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="hidden sizes differ"):
        hidden_loss([s], [t], torch.ones(1, 1, dtype=torch.bool))


# -- CRF transitions ----------------------------------------------------------------------------

def _crf(n: int, fill: float):
    from torchcrf import CRF

    crf = CRF(n, batch_first=True)
    with torch.no_grad():
        for p in crf.parameters():
            p.fill_(fill)
    return crf


def test_crf_transition_loss_same_space():
    assert crf_transition_loss(_crf(3, 0.5), _crf(3, 0.5)).item() == pytest.approx(0.0)
    assert crf_transition_loss(_crf(3, 1.0), _crf(3, 0.0)).item() == pytest.approx(1.0)
    s, t = _crf(2, 0.0), _crf(2, 0.0)
    with torch.no_grad():
        s.transitions[0, 1] = 3.0     # one of 2*2 + 2 + 2 = 8 scores is off by 3
    assert crf_transition_loss(s, t).item() == pytest.approx(9 / 8)


def test_transition_pairs_io_teacher_bio_student():
    pairs = transition_pairs(IO, BIO)
    got = {(tuple(s), tuple(t)) for s, t in zip(pairs.student_trans.tolist(), pairs.teacher_trans.tolist(),
                                                 strict=True)}
    o, b, i = 0, 1, 2        # student ids
    to, ti = 0, 1            # teacher ids
    assert ((o, b), (to, ti)) in got        # entity start
    assert ((b, i), (ti, ti)) in got        # inside
    assert ((i, o), (ti, to)) in got        # entity end
    assert not any(s == (o, i) for s, _ in got)   # invalid in BIO: not compared
    assert transition_pairs(BIO, BIO) is None
    # the loss only looks at matched scores
    s, t = _crf(3, 0.0), _crf(2, 0.0)
    with torch.no_grad():
        s.transitions[o, i] = 100.0      # unmatched (invalid) transition: ignored
    assert crf_transition_loss(s, t, pairs).item() == pytest.approx(0.0)
    with torch.no_grad():
        t.transitions[to, ti] = 2.0      # teacher O->I-PER is matched by student O->B-PER only
    n = len(pairs)
    assert crf_transition_loss(s, t, pairs).item() == pytest.approx(4.0 / n)
