#!/usr/bin/env bash
# One prepared command for a GPU machine lent for a few minutes: the GPU benchmark, the
# literature set-ups' cost per step on the GPU, then the reproduction rows continued from their
# checkpoints, each for an equal share of the time left. Run it in the repository root:
#
#     bash benchmarks/gpu_session.sh [SECONDS]        # SECONDS: the whole session (default 540)
#
# Inputs, in the ignored folder .gpu/ (GPU_DIR; benchmarks/README.md says how to fill it):
#   .gpu/data/mnist/        the four MNIST files (VAEBENCH_DATA points here unless set)
#   .gpu/runs/NAME/         a results directory per row, with the row's checkpoint if it has one
#   .gpu/rows               optional: one row per line, "NAME vaebench-run-arguments..."; without
#                           it, burda2015's IWAE k = 50 row (32 h on 2 CPU cores, the longest
#                           set-up) and the VampPrior rows of tomczak2018, dynamic and static
# Outputs, in $OUT (the GPU tool's; default gpu-out/; files under 16 MiB, as the GPU tool brings back):
#   bench_gpu.txt, bench_profiles.txt, rows.log, and NAME.tgz.part-aa, -ab... per row: the row's
#   results directory, tarred and split; join with `cat NAME.tgz.part-* | tar -xz`.
#
# DEVICE (default cuda) and QUICK=1 (smoke sizes for both benchmarks) serve a test on the CPU.
#
# Every row is stopped with SIGINT when its time is up: training resumes from its last
# checkpoint (every 5 epochs under these profiles), on the GPU or back on the CPU, and the
# record's training.segments says where it trained from which step.
set -u
session=${1:-540}
start=$(date +%s)
root=$(cd "$(dirname "$0")/.." && pwd)
work=${GPU_DIR:-$root/.gpu}
OUT=${OUT:-$root/gpu-out}
mkdir -p "$OUT" "$work/runs"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" VAEBENCH_PLUGINS=none PYTHONUNBUFFERED=1
export VAEBENCH_DATA="${VAEBENCH_DATA:-$work/data}"
device=${DEVICE:-cuda}
gpu_sizes=(--seeds 1 16 128 --steps 200 --iw-points 500)
profile_sizes=(--steps 50 --rounds 2)
if [ "${QUICK:-0}" = 1 ]; then
    gpu_sizes=(--quick) profile_sizes=(--quick --profiles tomczak2018 --priors standard-normal)
fi
left() { echo $((session - ($(date +%s) - start))); }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/bench_gpu.txt" 2>&1
timeout 150 python3 "$root/benchmarks/bench_gpu.py" --device "$device" "${gpu_sizes[@]}" \
    >>"$OUT/bench_gpu.txt" 2>&1 || echo "bench_gpu.py ended with status $?" >>"$OUT/bench_gpu.txt"
timeout 90 python3 "$root/benchmarks/bench_profiles.py" --device "$device" "${profile_sizes[@]}" \
    >"$OUT/bench_profiles.txt" 2>&1 || echo "ended with status $?" >>"$OUT/bench_profiles.txt"

if [ -f "$work/rows" ]; then
    rows=$(cat "$work/rows")
else
    rows="burda2015 --suite mnist --budget burda2015 --objectives iwae --component-option objective.k=50 --seeds 0
tomczak2018 --suite mnist --budget tomczak2018 --priors vamp --seeds 0
tomczak2018-static --suite mnist --budget tomczak2018 --priors vamp --seeds 0 --option binarization=static"
fi
todo=$(grep -c . <<<"$rows")
while read -r name args; do
    [ -n "$name" ] || continue
    # An equal share of what is left for each row still to run, less 40 s for the row to exit
    # and report its state; 40 s at the end for packing.
    seconds=$((($(left) - 40) / todo - 40))
    todo=$((todo - 1))
    if [ "$seconds" -lt 60 ]; then
        echo "$name: not started, $seconds s left" >>"$OUT/rows.log"
        continue
    fi
    echo "== $name: vaebench run $args (up to $seconds s)" >>"$OUT/rows.log"
    # shellcheck disable=SC2086  # the row's arguments are words
    timeout -s INT -k 20 "$seconds" python3 -m vaebench.cli run $args --device "$device" \
        --out "$work/runs/$name" --no-progress >>"$OUT/rows.log" 2>&1 </dev/null
    echo "== $name: exit status $?" >>"$OUT/rows.log"
    # shellcheck disable=SC2086
    python3 -m vaebench.cli run $args --out "$work/runs/$name" --dry-run 2>&1 </dev/null |
        grep -E "resumes at|finished" >>"$OUT/rows.log"
done <<<"$rows"

for dir in "$work"/runs/*/; do
    [ -d "$dir" ] || continue
    name=$(basename "$dir")
    tar -C "$work/runs" -czf - "$name" | split -b 15M - "$OUT/$name.tgz.part-"
done
ls -l "$OUT"
