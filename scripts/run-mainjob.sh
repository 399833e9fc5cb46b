#!/usr/bin/env bash
# The README's main-job command: installs what is missing (as root), builds
# examples/mainjob and runs it on its embedded default, a pool on a file in
# a temporary folder. Without /dev/zfs it runs inside the test bed's guest.
# Arguments go to the program.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

scripts/install-deps.sh
export PATH=$PATH:/usr/local/go/bin
bin=$(mktemp -d)/mainjob
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./examples/mainjob
scripts/guest-run "$bin" "$@"
