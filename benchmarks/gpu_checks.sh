#!/usr/bin/env bash
# Every GPU figure of BENCHMARKS.md in one call (a lent GPU is short: prepare, run once, read).
#
#   1. infer vs pipeline on CUDA (issue #5): random CamemBERT-base-shaped IO model, 2,000 real
#      WikiNEuRal-fr sentences, pipeline batch 64 vs nerkd fp32 / bf16 (batch 64, and 256);
#   2. distillation step throughput (issue #3): base preset, bf16, plain / bucketed / compiled.
#
# Usage, on a machine with a CUDA GPU, from the repository root:
#
#   WHEELS=.whl DATA=../shared/data/wikineural-fr/val.conllu bash benchmarks/gpu_checks.sh
#
# WHEELS (optional): a folder of wheels installed first into $SITE (default: a new temporary folder),
# for a GPU machine that cannot reach PyPI but has torch: nerkd's other needs, downloaded beside it with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl pydantic==2.13.4 pydantic_core==2.46.4 \
#       pydantic-settings==2.14.1 python-dotenv==1.2.2 annotated-types==0.7.0 typing-inspection==0.4.2 \
#       orjson==3.13.0 pytorch-crf==0.7.2 transformers==5.24.0 tokenizers==0.23.3 typer==0.29.2 rich==15.0.0
#   pip wheel --no-deps -w .whl seqeval==1.2.2
# Results go to $OUT (default ./gpu_out): infer_cuda.json, *.txt.
set -u
OUT=${OUT:-gpu_out}
DATA=${DATA:-../shared/data/wikineural-fr/val.conllu}
SENTENCES=${SENTENCES:-2000}
INFER_TIMEOUT=${INFER_TIMEOUT:-300}
DISTILL_TIMEOUT=${DISTILL_TIMEOUT:-200}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true
if [ -n "${WHEELS:-}" ]; then
    SITE=${SITE:-$(mktemp -d)}
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=$SITE:$PWD
else
    export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, os; print('torch', torch.__version__, 'transformers', transformers.__version__,
'cuda', torch.version.cuda, torch.cuda.get_device_name(), 'cpu cores', os.cpu_count())" | tee -a "$OUT/gpu.txt"
date -u | tee -a "$OUT/gpu.txt"

echo "== 1. infer vs pipeline (cuda) =="
timeout "$INFER_TIMEOUT" python3 benchmarks/infer_vs_pipeline.py --data "$DATA" --sentences "$SENTENCES" \
    --device cuda --batch-size 64 --big-batch 256 --block "$SENTENCES" --train-steps 0 \
    --json "$OUT/infer_cuda.json" >"$OUT/infer_cuda.txt" 2>"$OUT/infer_cuda.err"
echo "exit $?"
grep -E '^\| |^machine|^data' "$OUT/infer_cuda.txt" | head -30
tail -3 "$OUT/infer_cuda.err"

echo "== 2. distillation step throughput (cuda, bf16) =="
timeout "$DISTILL_TIMEOUT" python3 benchmarks/distill_throughput.py --preset base --device cuda --precision bf16 \
    --steps 20 --compile 2>"$OUT/distill_cuda.err" | tee "$OUT/distill_cuda.txt" | cut -c1-200
echo "exit $?"
tail -3 "$OUT/distill_cuda.err"
