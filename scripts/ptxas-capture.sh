#!/bin/sh
# CMake's CUDA compiler launcher (native/CMakeLists.txt): runs the nvcc command line it is given
# and files ptxas's resource report (-Xptxas -v) in REPORT_DIR/<object name>.ptxas.txt for
# scripts/ptxas-check.mjs, passing every other line of the compiler's output through.
# usage: ptxas-capture.sh REPORT_DIR nvcc ARGS...
dir="$1"
shift
out=""
prev=""
for arg in "$@"; do
  [ "$prev" = "-o" ] && out="$arg"
  prev="$arg"
done
mkdir -p "$dir"
name=$(basename "${out:-unnamed}")
tmp="$dir/$name.ptxas.tmp.$$"
"$@" >"$tmp" 2>&1
rc=$?
grep -E '^ptxas (info|warning)|bytes stack frame' "$tmp" >"$dir/$name.ptxas.txt"
grep -vE '^ptxas info|bytes stack frame' "$tmp" >&2
rm -f "$tmp"
exit $rc
