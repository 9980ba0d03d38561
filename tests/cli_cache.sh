#!/bin/sh
# The dsv4 tool's cache commands, with no GPU: warm, list, verify, detect a corrupt file, lineinfo modules
# cached apart, clear.
set -eu
dsv4=$1
export DSV4_CACHE_DIR="$2"
rm -rf "$DSV4_CACHE_DIR"
"$dsv4" cache warm --arch sm_90a --preset v4-flash | grep -q "compiled"
"$dsv4" cache warm --arch sm_90a --preset v4-flash | grep -q "0 kernel(s) compiled"
"$dsv4" cache list | grep -q "^ok "
"$dsv4" cache verify
f=$(ls "$DSV4_CACHE_DIR"/sm_90a/*.cubin | head -n 1)
head -c 100 "$f" > "$f.part" && mv "$f.part" "$f"        # truncate one file
if "$dsv4" cache verify > verify.out; then echo "verify missed a truncated file"; exit 1; fi
grep -q "^BAD " verify.out
"$dsv4" cache warm --arch sm_90a --preset v4-flash | grep -q "1 kernel(s) compiled"   # replaced
"$dsv4" cache verify
# DSV4_JIT_LINEINFO=1 compiles with -lineinfo: another cache key, so every kernel is compiled again beside the
# plain modules (5 files more), and both kinds load.
DSV4_JIT_LINEINFO=1 "$dsv4" cache warm --arch sm_90a --preset v4-flash | grep -q "5 kernel(s) compiled"
DSV4_JIT_LINEINFO=1 "$dsv4" cache warm --arch sm_90a --preset v4-flash | grep -q "0 kernel(s) compiled"
test "$(ls "$DSV4_CACHE_DIR"/sm_90a/*.cubin | wc -l)" -eq 10
"$dsv4" cache warm --arch sm_90a --preset v4-flash | grep -q "0 kernel(s) compiled"
"$dsv4" cache verify
# --topk: the indexer top-k's long-row kernels beside the router's, two block sizes and the sample-threshold
# kernel a k (500 shares 512's; k = 2048 has no sample kernel: dsv4_topk_select takes it for k <= 1024 only).
"$dsv4" cache warm --arch sm_90a --preset v4-flash --topk 512,500 | grep -q "k=512,500 for sm_90a: 3 kernel(s) compiled"
"$dsv4" cache warm --arch sm_90a --preset v4-flash --topk 512 | grep -q "k=512 for sm_90a: 0 kernel(s) compiled"
"$dsv4" cache warm --arch sm_90a --preset v4-flash --topk 2048 | grep -q "k=2048 for sm_90a: 2 kernel(s) compiled"
if "$dsv4" cache warm --arch sm_90a --preset v4-flash --topk 0 > /dev/null 2>&1; then echo "warm took --topk 0"; exit 1; fi
if "$dsv4" cache warm --arch sm_90a --preset v4-flash --topk 5x > /dev/null 2>&1; then echo "warm took --topk 5x"; exit 1; fi
"$dsv4" cache verify
"$dsv4" cache clear | grep -q "removed"
test -z "$(ls "$DSV4_CACHE_DIR"/sm_90a 2>/dev/null)"
echo "cli cache: 1 passed, 0 failed"
