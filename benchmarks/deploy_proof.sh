#!/usr/bin/env bash
# Issue #21, item 4: the deploy path (the domain chain's final student on ONNX Runtime, int8) against its teacher
# on torch fp32, on the 90 hand-written notes: one nerkd bench run (batch-1 latency and throughput, interleaved,
# 1 thread) and nerkd report tables (F1 per runtime) on data/medsoc_handwritten.jsonl and on the WikiNEuRal test
# split (ONNX folders scored on ONNX Runtime: infer.backend auto; --int8 adds torch dynamic int8 rows).
# Also the torch fp32 student/teacher ratio of item 1 (the same bench run, rows teacher and student).
# Needs benchmarks/domain_chain.sh's models (bench_work/domain/{teacher,student,final}) and, for the WikiNEuRal
# rows, benchmarks/wikineural_split.py's bench_work/wikineural/test.jsonl. Run it on a quiet machine.
#
#   bash benchmarks/deploy_proof.sh [RUN]      # RUN: a name for this run's bench file (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
CFG=configs/domain_minilm.yaml
D=bench_work/domain
P=$D/deploy                 # not <model>_onnx: the torch rows stay torch under infer.backend auto
RUN=${1:-1}
mkdir -p $P bench_work/logs
[ -f $P/final_onnx_fp32/manifest.json ] || nerkd export --config $CFG --model $D/final --format onnx --no-int8 \
  --input $D/dev_gold.jsonl --output $P/final_onnx_fp32
[ -f $P/final_onnx_int8/manifest.json ] || nerkd export --config $CFG --model $D/final --format onnx --int8 \
  --input $D/dev_gold.jsonl --output $P/final_onnx_int8
MODELS=(--model teacher=$D/teacher --model student=$D/student --model final=$D/final
        --model final_onnx=$P/final_onnx_fp32 --model final_onnx_int8=$P/final_onnx_int8)
nerkd bench --config $CFG "${MODELS[@]}" --input data/medsoc_handwritten.jsonl --sentences 90 --threads 1 \
  --json $P/bench_$RUN.json 2>&1 | tee bench_work/logs/deploy_bench_$RUN.log
if [ "$RUN" = 1 ]; then
  nerkd report --config $CFG --data data/medsoc_handwritten.jsonl --int8 "${MODELS[@]}" \
    --bench $P/bench_1.json --output $P/report_handwritten 2>&1 | tee bench_work/logs/deploy_report_handwritten.log
  if [ -f bench_work/wikineural/test.jsonl ]; then
    nerkd report --config $CFG --data bench_work/wikineural/test.jsonl --int8 "${MODELS[@]}" \
      --output $P/report_wikineural 2>&1 | tee bench_work/logs/deploy_report_wikineural.log
  fi
fi
