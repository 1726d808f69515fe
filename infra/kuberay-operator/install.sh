#!/usr/bin/env bash
# Install (or upgrade) the KubeRay operator for dripml: chart kuberay-operator 1.7.0 into
# namespace kuberay-system, watching only dripml's namespaces (values.yaml beside this file).
#
# Usage: infra/kuberay-operator/install.sh [--dry-run]
#   --dry-run   print the commands instead of running them (needs no cluster, no helm)
#
# Environment:
#   KUBERAY_NAMESPACE   namespace of the operator (default kuberay-system)
#   DRIPML_NAMESPACES   comma-separated namespaces it watches (default: values.yaml, "dripml");
#                       they are created when missing, because the chart puts a Role in each
#   HELM_TIMEOUT        how long --wait waits (default 5m)
set -euo pipefail

src="${BASH_SOURCE[0]}"; [[ "$src" == */* ]] || src="./$src"
here="$(cd "${src%/*}" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
parse_common_args "$@"

KUBERAY_CHART_VERSION="1.7.0"
KUBERAY_REPO="https://ray-project.github.io/kuberay-helm/"
namespace="${KUBERAY_NAMESPACE:-kuberay-system}"
watched="${DRIPML_NAMESPACES:-dripml}"

need helm kubectl

IFS=',' read -r -a watched_list <<<"$watched"
for ns in "${watched_list[@]}"; do
  if [[ "$DRY_RUN" != 1 ]] && kubectl get namespace "$ns" >/dev/null 2>&1; then
    continue
  fi
  run kubectl create namespace "$ns"
done

extra=()
if [[ -n "${DRIPML_NAMESPACES:-}" ]]; then
  extra+=(--set "watchNamespace={$DRIPML_NAMESPACES}")
fi

run helm upgrade --install kuberay-operator kuberay-operator \
  --repo "$KUBERAY_REPO" --version "$KUBERAY_CHART_VERSION" \
  --namespace "$namespace" --create-namespace \
  --values "$here/values.yaml" ${extra[@]+"${extra[@]}"} \
  --wait --timeout "${HELM_TIMEOUT:-5m}"
