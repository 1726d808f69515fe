#!/usr/bin/env bash
# Install (or upgrade) the NVIDIA device plugin: chart nvidia-device-plugin 0.20.0 into
# namespace nvidia-device-plugin, on GPU nodes only (values.yaml beside this file).
# Not for GKE, which runs its own device plugin on GPU node pools.
#
# Usage: infra/nvidia-device-plugin/install.sh [--dry-run]
#   --dry-run   print the commands instead of running them (needs no cluster, no helm)
#
# Environment:
#   NVDP_NAMESPACE   namespace of the plugin (default nvidia-device-plugin)
#   WITH_GFD=1       also deploy GPU Feature Discovery and Node Feature Discovery, and apply
#                    nodefeaturerule-gpu-present.yaml so NFD labels GPU nodes
#                    nvidia.com/gpu.present=true (for nodes their pool does not label)
#   HELM_TIMEOUT     how long --wait waits (default 5m)
set -euo pipefail

src="${BASH_SOURCE[0]}"; [[ "$src" == */* ]] || src="./$src"
here="$(cd "${src%/*}" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
parse_common_args "$@"

NVDP_CHART_VERSION="0.20.0"
NVDP_REPO="https://nvidia.github.io/k8s-device-plugin"
namespace="${NVDP_NAMESPACE:-nvidia-device-plugin}"

need helm kubectl

extra=()
if [[ "${WITH_GFD:-0}" == 1 ]]; then
  extra+=(--set gfd.enabled=true)
fi

run helm upgrade --install nvdp nvidia-device-plugin \
  --repo "$NVDP_REPO" --version "$NVDP_CHART_VERSION" \
  --namespace "$namespace" --create-namespace \
  --values "$here/values.yaml" ${extra[@]+"${extra[@]}"} \
  --wait --timeout "${HELM_TIMEOUT:-5m}"

if [[ "${WITH_GFD:-0}" == 1 ]]; then
  run kubectl apply -f "$here/nodefeaturerule-gpu-present.yaml"
fi
