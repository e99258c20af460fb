#!/usr/bin/env bash
# F1 of each CPU runtime on unseen text: torch fp32 / torch int8 / ONNX fp32 / ONNX int8, for the WikiNEuRal
# teacher and student 4 of few_labels.sh, scored by `nerkd report` on BENCHMARKS' test split (1,260 sentences).
#   bash benchmarks/int8_report.sh [BENCH_WORK] [OUT]
# BENCH_WORK holds artifacts/teacher, few/kd_all and wikineural/test.jsonl (wikineural_chain.sh, few_labels.sh).
set -euo pipefail
WORK=${1:-bench_work}
OUT=${2:-$WORK/int8_report}
mkdir -p "$OUT"
for name in teacher:artifacts/teacher student:few/kd_all; do
  model=$WORK/${name#*:}
  for kind in fp32 int8; do
    flag=$([ "$kind" = int8 ] && echo --int8 || true)
    [ -f "$OUT/${name%%:*}_onnx_$kind/manifest.json" ] ||
      nerkd export --model "$model" --format onnx $flag --set data.dev="$WORK/wikineural/dev.jsonl" \
        --output "$OUT/${name%%:*}_onnx_$kind"
  done
done
nerkd report --data "$WORK/wikineural/test.jsonl" --int8 \
  --model teacher="$WORK/artifacts/teacher" --model teacher_onnx="$OUT/teacher_onnx_fp32" \
  --model teacher_onnx_int8="$OUT/teacher_onnx_int8" \
  --model student="$WORK/few/kd_all" --model student_onnx="$OUT/student_onnx_fp32" \
  --model student_onnx_int8="$OUT/student_onnx_int8" --output "$OUT/report"
