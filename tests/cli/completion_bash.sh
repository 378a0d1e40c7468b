#!/usr/bin/env bash
# `stagelog completion bash`, sourced into bash, offers the commands, subcommands and options the
# CLI has, at the right places; the zsh and fish scripts pass their shell's syntax check where
# that shell is installed. $1: the stagelog binary.
set -euo pipefail
cli=$1
# shellcheck disable=SC1090
source <("$cli" completion bash)

offered() {
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _stagelog
  printf '%s\n' "${COMPREPLY[@]}"
}
expect() {  # expect WORD stagelog ARGS... CURRENT: WORD is among the completions.
  local want=$1 got
  shift
  got=$(offered "$@")
  if ! grep -qxF -- "$want" <<<"$got"; then
    echo "completing '$*': '$want' is not offered; offered: $(tr '\n' ' ' <<<"$got")" >&2
    exit 1
  fi
}
refuse() {  # refuse WORD stagelog ARGS... CURRENT: WORD is not among them.
  local unwanted=$1 got
  shift
  got=$(offered "$@")
  if grep -qxF -- "$unwanted" <<<"$got"; then
    echo "completing '$*': '$unwanted' is offered but does not belong there" >&2
    exit 1
  fi
}

expect serve stagelog se
expect --version stagelog --v
expect --listen stagelog serve --li
expect --log-format stagelog serve --log
refuse --listen stagelog parse --li
expect create stagelog token cr
expect --scope stagelog token create --sc
expect zsh stagelog completion z
expect parse stagelog help pa
# After an option that takes a value, files: this script's own folder's files.
cd "$(dirname "$0")"
expect completion_bash.sh stagelog serve --alerts completion_b

for shell in zsh fish; do
  if command -v "$shell" >/dev/null; then
    "$cli" completion "$shell" | "$shell" -n || {
      echo "stagelog completion $shell: $shell finds a syntax error" >&2
      exit 1
    }
  fi
done
echo "bash completion offers what stagelog has"
