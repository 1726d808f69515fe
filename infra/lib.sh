# shellcheck shell=bash
# Shared by the infra/ install scripts (sourced, not run).
#
# run CMD...   prints the command, shell-quoted, and runs it; with DRY_RUN=1 it only prints it,
#              so `--dry-run` output is exactly what a real run executes.
# need TOOL... fails with a clear message when a tool is missing from PATH (skipped in dry runs).
# parse_common_args "$@"   handles --dry-run and --help for every script.

DRY_RUN="${DRY_RUN:-0}"

run() {
  local quoted
  quoted="$(printf '%q ' "$@")"
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '%s\n' "${quoted% }"
  else
    printf '+ %s\n' "${quoted% }" >&2
    "$@"
  fi
}

need() {
  [[ "$DRY_RUN" == 1 ]] && return 0
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      printf '%s: %s is required but not on PATH (see infra/README.md)\n' "${0##*/}" "$tool" >&2
      exit 127
    fi
  done
}

usage_from_header() {
  # Print the comment block at the top of the calling script (after the shebang).
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
}

parse_common_args() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      -h|--help) usage_from_header; exit 0 ;;
      *) printf '%s: unknown argument %s (try --help)\n' "${0##*/}" "$arg" >&2; exit 2 ;;
    esac
  done
}

require_env() {
  # Each named variable must be set for a real run; a dry run shows <NAME> for a missing one.
  local name
  for name in "$@"; do
    if [[ -z "${!name:-}" ]]; then
      if [[ "$DRY_RUN" == 1 ]]; then
        printf -v "$name" '<%s>' "$name"
      else
        printf '%s: set %s (see --help)\n' "${0##*/}" "$name" >&2
        exit 2
      fi
    fi
  done
}
