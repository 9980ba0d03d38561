#!/bin/bash
# Runs the GPU test binaries of a build folder under compute-sanitizer: memcheck (--leak-check full),
# racecheck, initcheck and synccheck. One summary line per tool per test; exit status non-zero if any tool
# reported anything, a test failed or a run timed out. A test that exits 77 (no GPU) is counted as skipped.
#
#   bash tests/gpu/sanitize.sh [build folder, default ./build]
#
# Each test runs exactly as CTest runs it (command, arguments, ENVIRONMENT, WORKING_DIRECTORY, read from
# `ctest --show-only=json-v1`, label gpu), so it uses the build's test cache folder: warm it first (a plain
# `ctest -L gpu` run) and the sanitizer runs spend no time in NVRTC.
#
# Settings (environment):
#   DSV4_SANITIZE_TESTS    extended regex on the names of the tests labelled gpu (default '^test_gpu_': the
#                          C test binaries, not the Python suite), e.g. 'hash_router|topk_select' — big-N
#                          tests are slow under memcheck and racecheck
#   DSV4_SANITIZE_TOOLS    tools to run (default "memcheck racecheck initcheck synccheck")
#   DSV4_SANITIZE_TIMEOUT  seconds per tool per test (default 300); a run past it counts as a failure
#   DSV4_SANITIZE_JOBS     (test, tool) runs at once (default 1); the tools are mostly CPU-bound, so on a
#                          16-core GPU machine 8 or more in parallel finish the suite many times sooner
#   DSV4_SANITIZE_FILTERS  ';'-separated TOOL:TEST=PATTERN entries (TOOL may be '*'): that run sets
#                          DSV4_TEST_FILTER=PATTERN, so it runs only the cmocka tests whose names match, e.g.
#                          'racecheck:test_gpu_topk_long=test_strided' (racecheck is slow on big inputs;
#                          test_forced_shapes runs every long-row code path on small rows);
#                          PATTERN@N splits that run into N parallel runs, run i with DSV4_TEST_PART=i/N (the
#                          topk tests deal their cases round-robin into the parts), e.g. '*:test_gpu_topk_long=*@8'
#   DSV4_TEST_REDUCED      racecheck runs get DSV4_TEST_REDUCED=1 unless it is set here (then every tool gets
#                          the caller's value; 0: full size). The topk tests then run each long-row case on its
#                          first row, launched with the full case's plan (threads, cluster, slice, key width,
#                          candidates, shared memory: only the grid differs; dsv4_topk_long_enqueue_planned),
#                          skip a plan already run with the same cols, k and data kind, and give the warp kernel
#                          at most 64 rows, so every kernel code path still runs (tests/gpu/gpu_util.h).
#                          Racecheck instruments every shared-memory access: at full size (up to 2^25 elements a
#                          case) each twelfth of test_gpu_topk_long ran past 400 s
#   DSV4_SANITIZE_GPUS     comma-separated device ordinals (e.g. 0,1,2,3): the runs are dealt round-robin over them,
#                          each with CUDA_VISIBLE_DEVICES set to its one device (racecheck of the long-row top-k is
#                          bound by the GPU, not the CPU: parallel runs on one GPU only share it). A test that
#                          needs two GPUs (test_gpu_multi) then sees one and skips. Unset: every run sees the
#                          caller's devices
#   DSV4_SANITIZE_KERNELS  racecheck, initcheck and synccheck check only kernels whose mangled name holds this
#                          substring (default "dsv4": this library's kernels, not cuBLASLt's); "all" for every
#                          kernel. memcheck always checks every kernel (a bad pointer handed to cuBLASLt shows
#                          up in cuBLASLt's kernel).
#   DSV4_SANITIZE_API_ERRORS  memcheck's --report-api-errors (default "no": the tests check every CUDA return
#                          code themselves and some call the driver with bad arguments on purpose, e.g. a bad
#                          device ordinal; "explicit" or "all" to see them anyway — they then count as reports)
#   DSV4_SANITIZE_EXTRA    more compute-sanitizer options for every run
#   COMPUTE_SANITIZER      the binary (default: on PATH, else under /usr/local/cuda)
#   OUT                    logs go to $OUT/sanitize/ (else /tmp/dsv4-sanitize/): <test>.<tool>.log holds the
#                          tool's report, <test>.<tool>.out the test's own output
#
# The verdict of a run: the tool's exit status (--error-exitcode 86, distinct from a test's own failure
# status) or a non-zero count on any of its "SUMMARY:" lines is a report; otherwise the test's status
# decides (0 passed, 77 skipped, anything else failed). --check-exit-code and --require-cuda-init are off so
# that a skipping test (exit 77, maybe before any CUDA call) is not itself a report.
#
# compute-sanitizer needs a machine whose runtime lets it attach: it refused the device on the gVisor H200
# machines ("Device not supported") and works on the Firecracker H100 ones (see the device notes); the script
# says so when it sees that message.
set -uo pipefail

build=${1:-build}
[ -d "$build" ] || { echo "sanitize.sh: no build folder '$build'" >&2; exit 2; }
build=$(cd "$build" && pwd)
tools=${DSV4_SANITIZE_TOOLS:-memcheck racecheck initcheck synccheck}
select=${DSV4_SANITIZE_TESTS:-^test_gpu_}
limit=${DSV4_SANITIZE_TIMEOUT:-300}
kernels=${DSV4_SANITIZE_KERNELS:-dsv4}
jobs=${DSV4_SANITIZE_JOBS:-1}
api_errors=${DSV4_SANITIZE_API_ERRORS:-no}
logdir=${OUT:-/tmp/dsv4-sanitize}
[ -n "${OUT:-}" ] && logdir=$OUT/sanitize
mkdir -p "$logdir"

cs=${COMPUTE_SANITIZER:-}
if [ -z "$cs" ]; then
  for c in "$(command -v compute-sanitizer 2>/dev/null)" /usr/local/cuda/bin/compute-sanitizer \
           /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    if [ -n "$c" ] && [ -x "$c" ]; then cs=$c; break; fi
  done
fi
if [ -z "$cs" ] || [ ! -x "$cs" ]; then
  echo "sanitize.sh: compute-sanitizer not found (set COMPUTE_SANITIZER)" >&2
  exit 2
fi
echo "sanitize.sh: $("$cs" --version 2>/dev/null | grep -i version | head -n 1); build $build; logs in $logdir"
case " $tools " in
  *" racecheck "*) echo "sanitize.sh: racecheck runs with DSV4_TEST_REDUCED=${DSV4_TEST_REDUCED-1}" ;;
esac
# Options newer than some toolkits: used only where this compute-sanitizer lists them in --help.
help=$("$cs" --help 2>&1)
has_opt() { grep -q -- "--$1\b" <<<"$help"; }

for t in $tools; do
  case $t in memcheck|racecheck|initcheck|synccheck) ;; *) echo "sanitize.sh: unknown tool '$t'" >&2; exit 2;; esac
done

# The GPU tests as CTest would run them: one record per test, fields separated by 0x1f, environment
# entries by 0x1e: name, working directory, environment, then the command words.
list=$(ctest --test-dir "$build" --show-only=json-v1 2>/dev/null | python3 -c '
import json, sys
doc = json.load(sys.stdin)
for t in doc.get("tests", []):
    props = {p["name"]: p["value"] for p in t.get("properties", [])}
    labels = props.get("LABELS", [])
    if "gpu" not in labels or not t.get("command"):
        continue
    env = props.get("ENVIRONMENT", [])
    if isinstance(env, str):
        env = [env]
    wd = props.get("WORKING_DIRECTORY", "")
    print("\x1f".join([t["name"], wd, "\x1e".join(env)] + t["command"]))
')
if [ -z "$list" ]; then
  echo "sanitize.sh: no test labelled gpu in $build (configured with tests? python3 present?)" >&2
  exit 2
fi

# One (test, tool) run: writes its verdict line to $logdir/<test>.<tool>.verdict, prints the logs' heads when it
# is not clean.
# The DSV4_SANITIZE_FILTERS entry for (tool, test): "PATTERN" or "PATTERN@PARTS", or nothing.
filter_of() {
  local tool=$1 name=$2 entry entries pat=
  IFS=';' read -r -a entries <<<"${DSV4_SANITIZE_FILTERS:-}"
  for entry in "${entries[@]}"; do
    case $entry in "$tool:$name="*|"*:$name="*) pat=${entry#*=} ;; esac
  done
  printf '%s' "$pat"
}

# run_one TEST WORKDIR ENV TOOL PART COMMAND...: PART is "" or i/n (DSV4_TEST_PART).
run_one() {
  local name=$1 wd=$2 envs=$3 tool=$4 part=$5
  shift 5
  local cmd=("$@") envlist opts log out t0 rc dt sums reported verdict tag pat
  IFS=$'\x1e' read -r -a envlist <<<"$envs"
  pat=$(filter_of "$tool" "$name")
  pat=${pat%@*}
  [ -n "$pat" ] && envlist+=("DSV4_TEST_FILTER=$pat")
  [ -n "$gpu" ] && envlist+=("CUDA_VISIBLE_DEVICES=$gpu")
  tag=$tool
  if [ -n "$part" ]; then envlist+=("DSV4_TEST_PART=$part"); tag=$tool.part${part%/*}; fi
  # Racecheck on the topk tests' full-size cases runs far past any timeout; the caller's DSV4_TEST_REDUCED (0 too) wins.
  [ "$tool" = racecheck ] && [ -z "${DSV4_TEST_REDUCED+set}" ] && envlist+=("DSV4_TEST_REDUCED=1")
  opts=(--tool "$tool" --error-exitcode 86 --print-limit 200)
  has_opt check-exit-code && opts+=(--check-exit-code no)
  has_opt require-cuda-init && opts+=(--require-cuda-init no)
  has_opt target-processes && opts+=(--target-processes all)
  if [ "$tool" = memcheck ]; then
    opts+=(--leak-check full)
    has_opt report-api-errors && opts+=(--report-api-errors "$api_errors")
  elif [ "$kernels" != all ]; then
    opts+=(--kernel-name "kns=$kernels")
  fi
  # shellcheck disable=SC2206
  [ -n "${DSV4_SANITIZE_EXTRA:-}" ] && opts+=(${DSV4_SANITIZE_EXTRA})
  log=$logdir/$name.$tag.log out=$logdir/$name.$tag.out
  rm -f "$log" "$out"
  t0=$(date +%s.%N)
  (
    if [ -n "$wd" ]; then cd "$wd" || exit 2; fi
    exec env "${envlist[@]}" timeout --kill-after=30 "$limit" "$cs" "${opts[@]}" --log-file "$log" "${cmd[@]}"
  ) >"$out" 2>&1
  rc=$?
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  # Every "SUMMARY:" line of the tool (ERROR SUMMARY, RACECHECK SUMMARY, LEAK SUMMARY, ...) and its count.
  sums=$(grep -h "SUMMARY:" "$log" 2>/dev/null | sed 's/^=* *//' | paste -sd ';' -)
  reported=$(grep -h "SUMMARY:" "$log" 2>/dev/null | sed -n 's/.*SUMMARY: *\([0-9][0-9]*\).*/\1/p' |
             awk '{ s += $1 } END { print s + 0 }')
  if grep -qi "device not supported" "$log" "$out" 2>/dev/null; then
    verdict="TOOL CANNOT RUN: compute-sanitizer says 'Device not supported' (a gVisor machine? use an H100 one)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    verdict="TIMEOUT after ${limit} s (DSV4_SANITIZE_TIMEOUT / DSV4_SANITIZE_TESTS)"
  elif [ $rc -eq 86 ] || [ "$reported" -gt 0 ]; then
    verdict="REPORTED: ${sums:-exit status 86}"
  elif [ $rc -eq 77 ]; then
    verdict="skipped (exit 77: no GPU)"
  elif [ $rc -ne 0 ]; then
    verdict="TEST FAILED (exit $rc; ${sums:-no tool summary})"
  else
    verdict="clean (${sums:-no tool summary})"
  fi
  printf '%-16s %-28s %7ss  %s\n' "$tag" "$name" "$dt" "$verdict" >"$logdir/$name.$tag.verdict"
  case $verdict in
    clean*|skipped*) cat "$logdir/$name.$tag.verdict" ;;
    *) { cat "$logdir/$name.$tag.verdict"
         echo "----- $log (first 60 lines) -----"; head -n 60 "$log" 2>/dev/null
         echo "----- $out (last 20 lines) -----"; tail -n 20 "$out" 2>/dev/null; echo "-----"; } ;;
  esac
}

# Up to $jobs runs at once (the tools are mostly CPU-bound; the GPU is shared): `wait -n` frees a slot.
declare -a order=()
running=0
IFS=',' read -r -a gpus <<<"${DSV4_SANITIZE_GPUS:-}"
launched=0
gpu=
while IFS= read -r rec; do
  IFS=$'\x1f' read -r -a f <<<"$rec"
  name=${f[0]}
  [[ $name =~ $select ]] || continue
  for tool in $tools; do
    pat=$(filter_of "$tool" "$name")
    parts=1
    [[ $pat == *@* ]] && parts=${pat##*@}
    [[ $parts =~ ^[1-9][0-9]*$ ]] || { echo "sanitize.sh: bad part count in '$pat'" >&2; exit 2; }
    for ((i = 0; i < parts; ++i)); do
      part= tag=$tool
      [ "$parts" -gt 1 ] && part=$i/$parts tag=$tool.part$i
      order+=("$name.$tag")
      rm -f "$logdir/$name.$tag.verdict"
      if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
      [ ${#gpus[@]} -gt 0 ] && gpu=${gpus[$((launched % ${#gpus[@]}))]}
      launched=$((launched + 1))
      run_one "${f[0]}" "${f[1]}" "${f[2]}" "$tool" "$part" "${f[@]:3}" &
      running=$((running + 1))
    done
  done
done <<<"$list"
wait

declare -i ran=0 skipped=0 bad=0
summary=()
for o in "${order[@]}"; do
  line=$(cat "$logdir/$o.verdict" 2>/dev/null || echo "$o: no verdict (the run was lost)")
  summary+=("$line")
  case $line in
    *"  clean ("*) ran+=1 ;;
    *"  skipped ("*) skipped+=1 ;;
    *) bad+=1 ;;
  esac
done

echo "===== compute-sanitizer summary ($tools) ====="
printf '%s\n' "${summary[@]}"
total=$((ran + skipped + bad))
echo "sanitize: $ran clean, $bad with reports or failures, $skipped skipped"
if [ $total -eq 0 ]; then echo "sanitize.sh: no test matched DSV4_SANITIZE_TESTS='$select'" >&2; exit 2; fi
if [ $bad -gt 0 ]; then exit 1; fi
if [ $ran -eq 0 ]; then exit 77; fi
exit 0
