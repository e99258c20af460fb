#!/usr/bin/env bash
# Issue #10, point 5b: the domain chain on CPU, every step a nerkd command (configs/domain_minilm.yaml).
#   generic WikiNEuRal teacher (benchmarks/wikineural_chain.sh, step "teacher")
#   -> domain teacher (finetune --model on the 400 generated notes of data/train.jsonl)
#   -> 3-layer student: gold + 5,000 generated unlabelled notes (data.unlabeled) -> prune 25% -> recovery
#   + two students for comparison: the 400 gold notes alone, and the crude baseline (the domain teacher's hard
#     predictions on the same 5,000 notes used as gold)
# then nerkd bench on the hand-written notes and nerkd report on data/test.jsonl and, apart, on
# data/medsoc_handwritten.jsonl. Writes bench_work/domain/ (git-ignored); logs in bench_work/logs/domain_*.log.
#
#   bash benchmarks/domain_chain.sh        # from the repo root, after the teacher step of wikineural_chain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
CFG=configs/domain_minilm.yaml
GEN=bench_work/artifacts/teacher          # the generic teacher
D=bench_work/domain
LOGS=bench_work/logs
mkdir -p "$LOGS" "$D"
run() { local name=$1; shift; echo "+ $*" | tee "$LOGS/domain_$name.log"; /usr/bin/time -v "$@" 2>&1 | tee -a "$LOGS/domain_$name.log"; }
skip() { [ -n "${SKIP:-}" ] && [[ ",$SKIP," == *",$1,"* ]]; }   # SKIP=teacher,student,... skips steps

[ -f $D/unlabeled5000.txt ] || python data/make_sample.py --unlabeled 5000 --output $D/unlabeled5000.txt
# the domain teacher: 10 epochs at lr 1e-4 on the 400 notes (3 epochs at 5e-5 left it at 57 F1 on the hand-written
# notes, 10 at 1e-4 reach 72: BENCHMARKS.md)
skip teacher || run teacher nerkd finetune --config $CFG --model $GEN --output $D/teacher \
  --epochs "${TEACHER_EPOCHS:-10}" --lr "${TEACHER_LR:-1e-4}"
skip validate || run validate nerkd validate --config $CFG
skip student || run student nerkd distill --config $CFG --output $D/student
skip gold_only || run gold_only nerkd distill --config $CFG --output $D/student_gold_only --set data.unlabeled=null
if ! skip crude; then
  run pseudo nerkd infer --config $CFG --model $D/teacher --input $D/unlabeled5000.txt --output $D/pseudo.jsonl
  python benchmarks/pseudo_gold.py --gold data/train.jsonl --pred $D/pseudo.jsonl --out $D/gold_plus_pseudo.jsonl
  run crude nerkd distill --config $CFG --output $D/student_crude \
    --set data.train=$D/gold_plus_pseudo.jsonl --set data.unlabeled=null
fi
skip prune || run prune nerkd prune --config $CFG --model $D/student --rate 0.25 --output $D/pruned
skip recovery || run recovery nerkd finetune --config $CFG --model $D/pruned --teacher $D/teacher --output $D/final
MODELS=(--model generic=$GEN --model domain_teacher=$D/teacher --model student=$D/student --model pruned=$D/pruned
        --model final=$D/final --model gold_only=$D/student_gold_only --model crude=$D/student_crude)
skip bench || run bench nerkd bench --config $CFG "${MODELS[@]}" --input data/medsoc_handwritten.jsonl \
  --sentences 90 --json $D/bench.json
skip report || {
  run report_test nerkd report --config $CFG --data data/test.jsonl "${MODELS[@]}" --bench $D/bench.json \
    --output $D/report_test
  run report_handwritten nerkd report --config $CFG --data data/medsoc_handwritten.jsonl "${MODELS[@]}" \
    --bench $D/bench.json --output $D/report_handwritten
}
