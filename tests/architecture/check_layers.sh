#!/usr/bin/env bash
# The layers of docs/ARCHITECTURE.md, checked against every #include: a folder under src/ (and
# apps/) includes the private headers of its own folder and of the layers below it, never of a
# sibling or of a layer above; base/ includes no part at all; the public store headers name no
# server header, and the recorder's public headers name neither.
#   tests/architecture/check_layers.sh [SOURCE_DIR]
set -euo pipefail
cd "${1:-$(dirname "$0")/../..}"

# Lower numbers are lower layers. Folders of one rank are siblings.
declare -A rank=(
  [base]=0
  [core]=1
  [format]=2 [watchdog]=2 [net]=2
  [sinks]=3 [workflow]=3 [execution]=3
  [store]=4
  [server]=5
  [apps]=6
)

failures=0
fail() {
  echo "$1"
  failures=$((failures + 1))
}

for dir in src/*/; do
  part=$(basename "$dir")
  [ -n "${rank[$part]:-}" ] || fail "src/$part/: a folder the layers do not name (add it to $0 and docs/ARCHITECTURE.md)"
done

check_folder() {  # check_folder PART FILES...
  local part=$1
  shift
  local file line target
  for file in "$@"; do
    while IFS= read -r line; do
      target=${line#*\"}
      target=${target%%/*}
      [ "$target" = "$part" ] || [ "$target" = stagelog ] && continue
      if [ -z "${rank[$target]:-}" ]; then
        continue  # Not a part of ours ("bench_support.hpp", a test's own header).
      fi
      if [ "${rank[$target]}" -ge "${rank[$part]}" ]; then
        fail "$file includes $target/ (layer ${rank[$target]}) from $part/ (layer ${rank[$part]}): ${line}"
      fi
    done < <(grep -hE '^#include "[a-z_]+/' "$file" || true)
  done
}

for dir in src/*/; do
  part=$(basename "$dir")
  [ -n "${rank[$part]:-}" ] || continue
  mapfile -t files < <(find "$dir" -name '*.cpp' -o -name '*.hpp')
  check_folder "$part" "${files[@]}"
done
mapfile -t files < <(find apps -name '*.cpp' -o -name '*.hpp')
check_folder apps "${files[@]}"

# base/ uses no part: only the standard library, the system and stagelog/error.hpp.
while IFS= read -r hit; do
  fail "src/base/ includes more than the ground floor may: $hit"
done < <(grep -rnE '^#include "' src/base | grep -vE '"base/|"stagelog/error.hpp"' || true)

# The public headers of the store and the server belong to their layers too.
public_rank() {  # The layer of a public header's part: store/ and server/ have their own.
  case $1 in
    stagelog/store/*) echo "${rank[store]}" ;;
    stagelog/server/*) echo "${rank[server]}" ;;
    *) echo 0 ;;
  esac
}
for dir in src/*/ apps/; do
  part=$(basename "$dir")
  [ -n "${rank[$part]:-}" ] || continue
  while IFS=: read -r file line; do
    target=${line#*\"}
    target=${target%\"*}
    if [ "$(public_rank "$target")" -gt "${rank[$part]}" ]; then
      fail "$file includes $target, a layer above $part/: $line"
    fi
  done < <(grep -rnoE '^#include "stagelog/(store|server)/[^"]+"' "$dir" | cut -d: -f1,3- || true)
done

# Public headers: the store's name no server header; the recorder's name neither.
while IFS= read -r hit; do
  fail "a public store header includes a server header: $hit"
done < <(grep -rn '#include "stagelog/server/' include/stagelog/store || true)
while IFS= read -r hit; do
  fail "a public recorder header includes a store or server header: $hit"
done < <(grep -nE '#include "stagelog/(server|store)/' include/stagelog/*.hpp include/stagelog/sinks/*.hpp || true)

if [ "$failures" -gt 0 ]; then
  echo "check_layers: $failures include(s) against the layers"
  exit 1
fi
echo "check_layers: every include goes down the layers"
