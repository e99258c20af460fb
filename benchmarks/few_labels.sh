#!/usr/bin/env bash
# Issue #10, point 5a: few labels on real French text (WikiNEuRal-fr split of BENCHMARKS.md), CPU.
# Four 3-layer students of the same MiniLM teacher (benchmarks/wikineural_chain.sh, step "teacher"), trained the
# same way (configs/wikineural_minilm.yaml, EPOCHS epochs, same seed, lr, batch, phases) apart from their data:
#   1 ce500      CE only on the first 500 gold train sentences
#   2 kd500      KD (the four-loss recipe) on the same 500
#   3 kd500_unl  KD on the same 500 + the other 9,580 train sentences as raw text (tags dropped, detokenised,
#                read through data.unlabeled: benchmarks/make_unlabeled_wikineural.py), teacher cache on
#   4 kd_all     KD on all 10,080 gold train sentences (reference)
# then nerkd report on the test split. Writes bench_work/few/ (git-ignored); logs in bench_work/logs/few_*.log.
#
#   bash benchmarks/few_labels.sh          # EPOCHS=5 by default; SKIP=ce500,kd500 skips steps
#   FEW_OUT=bench_work/few_e10 EPOCHS=10 SKIP=ce500,kd500,kd_all,report bash benchmarks/few_labels.sh   # student 3, 10 epochs
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
CFG=configs/wikineural_minilm.yaml
W=bench_work/wikineural
F=${FEW_OUT:-bench_work/few}
LOGS=bench_work/logs
EPOCHS=${EPOCHS:-5}
mkdir -p "$LOGS" "$F"
TAG=$(basename "$F")
run() { local name=$1; shift; echo "+ $*" | tee "$LOGS/${TAG}_$name.log"; /usr/bin/time -v "$@" 2>&1 | tee -a "$LOGS/${TAG}_$name.log"; }
skip() { [ -n "${SKIP:-}" ] && [[ ",$SKIP," == *",$1,"* ]]; }

python benchmarks/wikineural_split.py --src ../shared/data/wikineural-fr/val.conllu --out $W
python benchmarks/make_unlabeled_wikineural.py --src ../shared/data/wikineural-fr/val.conllu --out $W --gold 500
N_UNL=$(wc -l < $W/unlabeled.txt)
# unlabelled texts per gold window and epoch: all of them once per epoch (500 sentences make 500 windows here)
RATIO=$(python -c "print(round($N_UNL / 500, 4))")
COMMON=(--config $CFG --set train.epochs=$EPOCHS)
CE_ONLY='distill.phases=[{from_epoch: 1, weights: {ce: 1.0, kd: 0.0, hidden: 0.0, crf: 0.0}}]'
skip ce500 || run ce500 nerkd distill "${COMMON[@]}" --output $F/ce500 --set data.train=$W/train500.jsonl \
  --set "$CE_ONLY"
skip kd500 || run kd500 nerkd distill "${COMMON[@]}" --output $F/kd500 --set data.train=$W/train500.jsonl
skip kd500_unl || run kd500_unl nerkd distill "${COMMON[@]}" --output $F/kd500_unl \
  --set data.train=$W/train500.jsonl --set data.unlabeled=$W/unlabeled.txt \
  --set distill.unlabeled_ratio=$RATIO --set distill.cache_teacher=true
skip kd_all || run kd_all nerkd distill "${COMMON[@]}" --output $F/kd_all
skip report || run report nerkd report --config $CFG --data $W/test.jsonl --model teacher=bench_work/artifacts/teacher \
  --model 1_ce500=$F/ce500 --model 2_kd500=$F/kd500 --model 3_kd500_unlabeled=$F/kd500_unl \
  --model 4_kd_all_gold=$F/kd_all --output $F/report
