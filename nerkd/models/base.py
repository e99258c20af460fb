"""A domain teacher's starting point (``nerkd finetune --base ENCODER``): a pretrained encoder
(local folder or hub id) with a new token classifier over the data's labels, and optionally a
fresh CRF. ``--base scratch`` is built by :func:`nerkd.models.scratch.scratch_model` instead."""

from __future__ import annotations

from nerkd.data.labels import LabelSpace
from nerkd.errors import ModelLoadError
from nerkd.models.ner import NerModel, load_tokenizer


def base_model(ref: str, space: LabelSpace, crf: bool, *, trust_remote_code: bool = False
               ) -> tuple[NerModel, object]:
    """The encoder at ``ref`` with a new classifier over ``space`` (and a new CRF with ``crf``), and
    its tokenizer. Errors name the ``--base`` option."""
    from transformers import AutoModelForTokenClassification

    from nerkd.models import quiet_transformers
    from nerkd.models.hub import check_ref, short_reason

    quiet_transformers()
    check_ref(ref, "base model", "--base")
    tokenizer = load_tokenizer(ref, trust_remote_code=trust_remote_code, what="base model", option="--base")
    try:
        encoder = AutoModelForTokenClassification.from_pretrained(
            ref, num_labels=len(space), id2label=space.id2label, label2id=space.label2id,
            ignore_mismatched_sizes=True, trust_remote_code=trust_remote_code, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"base model {ref}: cannot load ({short_reason(e)})") from e
    return NerModel(encoder, crf=crf), tokenizer
