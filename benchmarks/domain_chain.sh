#!/usr/bin/env bash
# Issue #20, item 4: the domain chain on CPU, every step a nerkd command (configs/domain_minilm.yaml).
#   generic WikiNEuRal teacher (benchmarks/wikineural_chain.sh, step "teacher")
#   -> domain teacher (finetune --model on the 400 generated notes of data/train.jsonl + 560 freely written gold
#      notes of data/medsoc_gold.jsonl; best epoch on the 100 gold notes held out by benchmarks/domain_gold_split.py)
#   -> 3-layer student: that gold + the 3,246 freely written notes of data/medsoc_unlabeled.txt (data.unlabeled)
#   -> prune 25% -> recovery
#   + three students for comparison, each distilled exactly as the student but for its data: the same number of
#     template notes (data/make_sample.py --unlabeled) as the transfer set; the gold alone; the crude baseline (the
#     domain teacher's hard predictions on the 3,246 notes used as gold)
# then nerkd report on data/test.jsonl and, apart, on data/medsoc_handwritten.jsonl (with the leak view,
# --redact) and on the dev split. nerkd bench is a step apart (STEPS=bench, on a quiet machine).
# Writes bench_work/domain/ (git-ignored); logs in bench_work/logs/domain_*.log.
#
#   bash benchmarks/domain_chain.sh               # from the repo root, after the teacher step of wikineural_chain.sh
#   SKIP=template,crude bash benchmarks/domain_chain.sh    # leave steps out
#   STEPS=bench bash benchmarks/domain_chain.sh            # only the listed steps
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
CFG=configs/domain_minilm.yaml
GEN=bench_work/artifacts/teacher          # the generic teacher
D=bench_work/domain
LOGS=bench_work/logs
mkdir -p "$LOGS" "$D"
run() { local name=$1; shift; echo "+ $*" | tee "$LOGS/domain_$name.log"; /usr/bin/time -v "$@" 2>&1 | tee -a "$LOGS/domain_$name.log"; }
skip() {   # SKIP=a,b leaves steps out; STEPS=a,b runs only those
  { [ -n "${SKIP:-}" ] && [[ ",$SKIP," == *",$1,"* ]]; } || { [ -n "${STEPS:-}" ] && [[ ",$STEPS," != *",$1,"* ]]; }
}

python benchmarks/domain_gold_split.py --out $D
N=$(wc -l < data/medsoc_unlabeled.txt)
[ -f $D/unlabeled_template.txt ] || python data/make_sample.py --unlabeled "$N" --output $D/unlabeled_template.txt
skip teacher || run teacher nerkd finetune --config $CFG --model $GEN --output $D/teacher \
  --epochs "${TEACHER_EPOCHS:-10}" --lr "${TEACHER_LR:-1e-4}"
skip validate || run validate nerkd validate --config $CFG
skip student || run student nerkd distill --config $CFG --output $D/student
skip prune || run prune nerkd prune --config $CFG --model $D/student --rate 0.25 --output $D/pruned
skip recovery || run recovery nerkd finetune --config $CFG --model $D/pruned --teacher $D/teacher --output $D/final
skip template || run template nerkd distill --config $CFG --output $D/student_template \
  --set data.unlabeled=$D/unlabeled_template.txt
skip gold_only || run gold_only nerkd distill --config $CFG --output $D/student_gold_only --set data.unlabeled=null
if ! skip crude; then
  run pseudo nerkd infer --config $CFG --model $D/teacher --input data/medsoc_unlabeled.txt --output $D/pseudo.jsonl
  python benchmarks/pseudo_gold.py --gold $D/train_gold.jsonl --pred $D/pseudo.jsonl --out $D/gold_plus_pseudo.jsonl
  run crude nerkd distill --config $CFG --output $D/student_crude \
    --set data.train=$D/gold_plus_pseudo.jsonl --set data.unlabeled=null
fi
MODELS=(--model generic=$GEN --model domain_teacher=$D/teacher --model student=$D/student --model pruned=$D/pruned
        --model final=$D/final --model template=$D/student_template --model gold_only=$D/student_gold_only
        --model crude=$D/student_crude)
skip bench || run bench nerkd bench --config $CFG --model domain_teacher=$D/teacher --model student=$D/student \
  --model final=$D/final --input data/medsoc_handwritten.jsonl --sentences 90 --json $D/bench.json
if ! skip report; then
  BENCH=(); [ -f $D/bench.json ] && BENCH=(--bench $D/bench.json)
  run report_test nerkd report --config $CFG --data data/test.jsonl "${MODELS[@]}" "${BENCH[@]}" --output $D/report_test
  run report_dev nerkd report --config $CFG --data $D/dev_gold.jsonl "${MODELS[@]}" --output $D/report_dev
  run report_handwritten nerkd report --config $CFG --data data/medsoc_handwritten.jsonl "${MODELS[@]}" \
    "${BENCH[@]}" --redact --output $D/report_handwritten
fi
