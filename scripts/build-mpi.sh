#!/usr/bin/env bash
# Builds native/collectives (pg_mpi.node, the MPI collectives) into build-mpi/ where MPI is installed.
# npm ci builds the addon before scripts/install-peers.sh installs MPI, so this is a step of its
# own: install-peers runs it, and `patentgpt launch` and the data-parallel tests run it on demand.
# Exit 0 and a message, without a module, where there is no MPI or no cmake.
set -eu
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null; then echo "build-mpi: no cmake; pg_mpi.node not built" >&2; exit 0; fi
if ! command -v mpicxx >/dev/null && ! command -v mpic++ >/dev/null; then
  echo "build-mpi: no MPI compiler (install libopenmpi-dev); pg_mpi.node not built" >&2; exit 0
fi
# One build at a time (test files that need the module may start it together).
mkdir -p build-mpi
if command -v flock >/dev/null; then exec 9>build-mpi/.lock && flock 9; fi
cmake -S native/collectives -B build-mpi -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-mpi -j 2 >/dev/null
[ -f build-mpi/pg_mpi.node ] && echo "build-mpi: built build-mpi/pg_mpi.node"
