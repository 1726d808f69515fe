#!/usr/bin/env bash
# What a cluster needs before dripml, in order: the KubeRay operator, then the NVIDIA device
# plugin (each with its pinned chart version and the values file in its folder). Run it with
# a kubectl context on the target cluster; then install charts/dripml (infra/README.md).
#
# Usage: infra/install.sh [--dry-run] [--with-kfp] [--skip-device-plugin]
#   --dry-run              print every command instead of running it (no cluster, helm or
#                          kubectl needed)
#   --with-kfp             first install Kubeflow Pipelines 2.17.0 standalone
#                          (infra/kubeflow-pipelines/install.sh)
#   --skip-device-plugin   leave out the NVIDIA device plugin: on GKE (which runs its own),
#                          on clusters that already have it or the NVIDIA GPU Operator, or
#                          without GPU nodes
#
# The environment variables of the scripts it runs apply (KUBERAY_NAMESPACE,
# DRIPML_NAMESPACES, NVDP_NAMESPACE, WITH_GFD, KFP_ENV, HELM_TIMEOUT).
set -euo pipefail

src="${BASH_SOURCE[0]}"; [[ "$src" == */* ]] || src="./$src"
here="$(cd "${src%/*}" && pwd)"
# shellcheck source=SCRIPTDIR/lib.sh
source "$here/lib.sh"

with_kfp=0
device_plugin=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --with-kfp) with_kfp=1 ;;
    --skip-device-plugin) device_plugin=0 ;;
    -h|--help) usage_from_header; exit 0 ;;
    *) printf 'install.sh: unknown argument %s (try --help)\n' "$arg" >&2; exit 2 ;;
  esac
done
export DRY_RUN

step() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '# %s\n' "$1"
  else
    printf '==> %s\n' "$1" >&2
  fi
  "$BASH" "$here/$2"
}

if [[ "$with_kfp" == 1 ]]; then
  step "Kubeflow Pipelines" kubeflow-pipelines/install.sh
fi
step "KubeRay operator" kuberay-operator/install.sh
if [[ "$device_plugin" == 1 ]]; then
  step "NVIDIA device plugin" nvidia-device-plugin/install.sh
fi
if [[ "$DRY_RUN" != 1 ]]; then
  printf 'Done. Next: helm upgrade --install dripml charts/dripml --namespace dripml --create-namespace\n' >&2
fi
