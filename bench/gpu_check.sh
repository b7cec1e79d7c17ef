#!/usr/bin/env bash
# The GPU check: build and run the CUDA and Triton paths, and measure the method at real model shapes.
#
#   bash bench/gpu_check.sh [--out DIR] [--steps 1,2,3,4,5,6,7] [--dry-run]
#
# Seven steps, in order, each under its own time limit (`timeout`); a step that fails or times out is recorded and the
# next one runs. Everything lands in DIR (default gpu_check_out/): one log per step, the steps' JSON results,
# steps.jsonl (status, exit code, seconds per step) and summary.md / summary.json (bench/gpu_summary.py).
#   1  CUDA torch (the installed torch's version; reinstalled from $VLMTEACH_TORCH_INDEX only if it is a CPU build),
#      the sdist (scripts/sdist.py), a wheel built from it with VLMTEACH_BUILD_CUDA=1 for this GPU's architecture
#      and installed, `vlmteach-fast doctor` run outside the checkout
#   2  VLMTEACH_EXPECT_CUDA_EXT=1 pytest tests -m cuda (kernels on CUDA and Triton, the teacher's CUDA-vs-CPU test)
#   3  fused LoRA vs PEFT vs the frozen base, and each backend forced (reference, triton, cuda) beside
#      torch.compile max-autotune of the reference, fwd+bwd, bf16 and fp16, ranks 16 / 64, 3072 and 5120 features,
#      8k-32k tokens (bench/bench_lora.py; ms, TFLOP/s, GB/s; ratios in summary.md); bench/lora_table.py writes
#      the backend table the op ships (vlmteach_fast/ops/lora_backends.json) and a copy to DIR
#   4  one optimize step and one Best-of-N candidate, Wan2.2-TI2V-5B + Qwen2.5-VL-7B shapes, random bf16 weights,
#      480p x 49 frames and 704p x 121 frames (bench/gpu_step.py)
#   5  the same step with block checkpointing and in k-step mode (T=4, K=2), 480p
#   6  the denoiser's fwd and fwd+bwd under each attention backend of diffusers' dispatcher (bench/gpu_attention.py)
#   7  the step and the candidate with the planner's settings for one 80 GB card at both geometries
#      (bench/plan_predictions.json, made on a CPU by bench/plan_predictions.py; summary.md sets them side by side)
# --dry-run shrinks every shape to tiny and runs on the CPU (a few minutes on 2 cores): it skips the CUDA torch
# install and the CUDA build, and measures nothing; it exists so that this script cannot rot (CI runs it).
# Time limits (seconds) per step: GPU_CHECK_LIMIT_1 ... GPU_CHECK_LIMIT_7 override the defaults below, which add up
# to about 15 minutes. Python: $PYTHON (default: python).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=gpu_check_out
DRY=0
STEPS="1,2,3,4,5,6,7"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) OUT="${2:?--out needs a directory}"; shift ;;
        --out=*) OUT="${1#--out=}" ;;
        --steps) STEPS="${2:?--steps needs a list such as 1,3,4}"; shift ;;
        --steps=*) STEPS="${1#--steps=}" ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (expected --out DIR, --steps LIST, --dry-run)" >&2; exit 2 ;;
    esac
    shift
done
PY="${PYTHON:-python}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
: > "$OUT/steps.jsonl"

if [ "$DRY" = 1 ]; then
    DRYFLAG="--dry-run"
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1  # the dry run shares small CI machines
    DEFAULT_LIMITS=(0 120 300 180 240 240 180 240)
    LORA_SHAPES="128x96x16,128x96x64"
    LORA_ROUNDS=3
    LORA_TABLE_ARGS="--out '$OUT/lora_backends.json'"  # CPU rows never reach the shipped table
else
    DRYFLAG=""
    # ~15 min of GPU time in all: the sum of these is 900 s.
    DEFAULT_LIMITS=(0 230 60 120 170 100 60 160)
    LORA_SHAPES=""
    for f in 3072 5120; do for t in 8192 16384 32768; do for r in 16 64; do
        LORA_SHAPES="${LORA_SHAPES:+$LORA_SHAPES,}${t}x${f}x${r}"
    done; done; done
    LORA_ROUNDS=10
    # the measured rows replace this GPU's rows in the table the op ships (commit it), a copy lands in DIR
    LORA_TABLE_ARGS="&& cp vlmteach_fast/ops/lora_backends.json '$OUT/lora_backends.json'"
fi

# run_step N TITLE COMMAND: run COMMAND (a bash string) under the step's time limit, log to DIR/stepN.log, and
# append {"step", "title", "status", "rc", "seconds", "limit_s", "log"} to steps.jsonl.
run_step() {
    local n="$1" title="$2" cmd="$3"
    case ",$STEPS," in *",$n,"*) ;; *) return 0 ;; esac
    local var="GPU_CHECK_LIMIT_$n"
    local limit="${!var:-${DEFAULT_LIMITS[$n]}}"
    local log="$OUT/step$n.log" start end rc status
    echo "== step $n: $title (limit ${limit} s)"
    start=$(date +%s.%N)
    timeout --kill-after=15 "$limit" bash -c "$cmd" > "$log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    case $rc in
        0) status=ok ;;
        124|137) status=timeout ;;
        *) status=failed ;;
    esac
    local secs
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    printf '{"step": %s, "title": "%s", "status": "%s", "rc": %s, "seconds": %s, "limit_s": %s, "log": "%s"}\n' \
        "$n" "$title" "$status" "$rc" "$secs" "$limit" "step$n.log" >> "$OUT/steps.jsonl"
    echo "   $status (exit $rc, ${secs} s); log: $log"
    tail -n 3 "$log" | sed 's/^/   | /'
}

# Step 1 builds from the sdist, not from the checkout: what is measured is what `pip install` of the published archive
# builds (docs/packaging.md). sdist_wheel WHEEL_CHECK_FLAGS: the commands that make DIR/dist/*.tar.gz from a clean
# copy of the tree, check it, build a wheel from it (the VLMTEACH_BUILD_* settings apply) and check that.
sdist_wheel() {
    echo "rm -rf '$OUT/dist'
sdist=\$($PY scripts/sdist.py build --outdir '$OUT/dist' | tail -n 1)
$PY scripts/sdist.py check \"\$sdist\"
$PY -m pip wheel --no-build-isolation --no-deps -w '$OUT/dist' \"\$sdist\"
wheel=\$(ls '$OUT'/dist/vlmteach_fast-*.whl)
$PY scripts/sdist.py check $1 \"\$wheel\""
}
if [ "$DRY" = 1 ]; then
    # The same sdist and wheel commands, the wheel without extensions (seconds); nothing is installed.
    STEP1="set -e
echo 'dry run: skipped installing a CUDA build of torch and building the CUDA extension (VLMTEACH_BUILD_CUDA=1)'
export VLMTEACH_BUILD_CPU=0 VLMTEACH_BUILD_CUDA=0
$(sdist_wheel "")
$PY -m vlmteach_fast.cli doctor"
else
    STEP1="set -e
ver=\$($PY -c 'import torch; print(torch.__version__.split(\"+\")[0])')
if $PY -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)'; then
    echo \"torch \$ver is already a CUDA build: not reinstalled\"
else
    echo \"torch \$ver is a CPU build: installing its CUDA build from \${VLMTEACH_TORCH_INDEX:-https://pypi.org/simple}\"
    $PY -m pip uninstall -y torch
    PIP_FIND_LINKS= $PY -m pip install --index-url \"\${VLMTEACH_TORCH_INDEX:-https://pypi.org/simple}\" \"torch==\$ver\"
fi
arch=\$($PY -c 'import torch; print(\"%d.%d\" % torch.cuda.get_device_capability())')
echo \"building the sdist, then the CUDA extension from it for arch \$arch\"
export VLMTEACH_BUILD_CUDA=1 VLMTEACH_CUDA_ARCHS=\$arch
$(sdist_wheel "--cpu-ext --cuda-ext")
$PY -m pip install --no-deps --force-reinstall \"\$wheel\"
# Steps 2 and 3 run from the repository root, where \`python -m\` imports the checkout: it gets the same binaries.
$PY -c 'import sys, zipfile; whl = zipfile.ZipFile(sys.argv[1])
[whl.extract(n) for n in whl.namelist() if n.startswith(\"vlmteach_fast/_C_\")]' \"\$wheel\"
cd '$OUT' && $PY -m vlmteach_fast.cli doctor"
fi
run_step 1 "CUDA torch, CUDA extension build, doctor" "$STEP1"

run_step 2 "pytest -m cuda (CUDA/Triton kernels, teacher CUDA vs CPU)" \
    "VLMTEACH_EXPECT_CUDA_EXT=1 $PY -m pytest tests -m cuda -q -rs -p no:cacheprovider --junitxml='$OUT/step2_pytest.xml'"

# The dtypes: bf16 and fp16 (on a CPU, those its torch can multiply; none is dropped on x86 with torch >= 2.1).
LORA_DTYPES=$($PY -c "
import torch
ok = []
for name in ('bfloat16', 'float16'):
    try:
        torch.ones(2, 2, dtype=getattr(torch, name)) @ torch.ones(2, 2, dtype=getattr(torch, name))
        ok.append(name)
    except RuntimeError:
        pass
print(','.join(ok))" 2>/dev/null)
run_step 3 "fused LoRA vs PEFT vs base, fwd+bwd" \
    "VLMTEACH_BENCH_LORA_SHAPES='$LORA_SHAPES' VLMTEACH_BENCH_LORA_DTYPES='${LORA_DTYPES:-bfloat16}' \
VLMTEACH_BENCH_LORA_MODES=full VLMTEACH_BENCH_LORA_ROUNDS=$LORA_ROUNDS \
$PY -m pytest bench/bench_lora.py -q -p no:cacheprovider --benchmark-only --benchmark-json='$OUT/step3_lora.json' \
&& $PY -m vlmteach_fast.cli bench-report '$OUT/step3_lora.json' --reference peft,base --out '$OUT/step3_lora.md' \
&& $PY bench/lora_table.py '$OUT/step3_lora.json' $LORA_TABLE_ARGS"

run_step 4 "optimize step vs Best-of-N candidate, Wan2.2-5B + Qwen2.5-VL-7B shapes" \
    "$PY bench/gpu_step.py $DRYFLAG --out '$OUT/step4_step.json' --variants one_step --geometries 480p49,704p121"

run_step 5 "the step with block checkpointing and k-step (K=2)" \
    "$PY bench/gpu_step.py $DRYFLAG --out '$OUT/step5_variants.json' --variants block_checkpointing,k_step2 \
--geometries 480p49"

run_step 6 "attention backends, denoiser fwd and fwd+bwd" \
    "$PY bench/gpu_attention.py $DRYFLAG --out '$OUT/step6_attention.json'"

# 7: the planner's settings for an 80 GB card (bench/plan_predictions.json, made on a CPU) at both geometries.
STEP7=""
for g in 480p49 704p121; do
    flags=$($PY -c "import json; print(json.load(open('bench/plan_predictions.json'))['geometries']['$g']['gpu_step_flags'])")
    STEP7="${STEP7:+$STEP7 && }$PY bench/gpu_step.py $DRYFLAG --out '$OUT/step7_$g.json' $flags --geometries $g"
done
run_step 7 "the planner's settings for one 80 GB card, next to its predictions" "$STEP7"

echo "== summary"
$PY bench/gpu_summary.py "$OUT" ${DRYFLAG:+--dry-run}
rc=$?
echo "summary: $OUT/summary.md"
# Exit status: 0 when every step that ran was ok, else 1 (the summary says which failed and why).
if grep -q '"status": "ok"' "$OUT/steps.jsonl" && ! grep -qv '"status": "ok"' "$OUT/steps.jsonl" && [ $rc = 0 ]; then
    exit 0
fi
exit 1
