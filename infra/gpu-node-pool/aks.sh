#!/usr/bin/env bash
# Add an example AKS GPU node pool to an existing cluster: Standard_NC8as_T4_v3 (8 vCPUs,
# 56 GiB, one NVIDIA T4), cluster autoscaler 0 to 4 nodes, taint
# nvidia.com/gpu=present:NoSchedule, label nvidia.com/gpu.present=true. AKS installs the
# NVIDIA driver on GPU node pools; the device plugin comes from infra/nvidia-device-plugin.
# Uses your az login; no credentials are stored here.
#
# Usage: AZ_RESOURCE_GROUP=... CLUSTER_NAME=... infra/gpu-node-pool/aks.sh [--dry-run]
#   --dry-run   print the az command instead of running it
#
# Environment:
#   AZ_RESOURCE_GROUP   the cluster's resource group (required)
#   CLUSTER_NAME        the AKS cluster (required)
#   POOL_NAME           node pool name, lowercase letters and digits, at most 12 (default gpu)
#   GPU_VM_SIZE         VM size (default Standard_NC8as_T4_v3; e.g. Standard_NC24ads_A100_v4);
#                       it must fit the GPU worker, 4 CPUs and 16 GiB by default
#   MAX_NODES           autoscaler maximum (default 4)
set -euo pipefail

src="${BASH_SOURCE[0]}"; [[ "$src" == */* ]] || src="./$src"
here="$(cd "${src%/*}" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
parse_common_args "$@"
require_env AZ_RESOURCE_GROUP CLUSTER_NAME
need az

run az aks nodepool add \
  --resource-group "$AZ_RESOURCE_GROUP" --cluster-name "$CLUSTER_NAME" \
  --name "${POOL_NAME:-gpu}" --mode User --os-type Linux \
  --node-vm-size "${GPU_VM_SIZE:-Standard_NC8as_T4_v3}" \
  --node-count 0 --enable-cluster-autoscaler --min-count 0 --max-count "${MAX_NODES:-4}" \
  --node-taints nvidia.com/gpu=present:NoSchedule \
  --labels nvidia.com/gpu.present=true dripml.io/node-pool=gpu
