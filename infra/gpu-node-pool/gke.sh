#!/usr/bin/env bash
# Create an example GKE GPU node pool in an existing cluster: g2-standard-8 (8 vCPUs, 32 GB) with one NVIDIA L4,
# autoscaling 0 to 4 nodes, taint nvidia.com/gpu=present:NoSchedule, label
# nvidia.com/gpu.present=true. GKE installs the NVIDIA driver (gpu-driver-version) and runs
# its own device plugin on it: skip infra/nvidia-device-plugin on GKE. Uses your gcloud
# credentials; none are stored here.
#
# Usage: CLUSTER_NAME=... GCP_LOCATION=... infra/gpu-node-pool/gke.sh [--dry-run]
#   --dry-run   print the gcloud command instead of running it
#
# Environment:
#   CLUSTER_NAME       the GKE cluster (required)
#   GCP_LOCATION       its region or zone, e.g. us-central1 (required); the zones used must
#                      offer the accelerator
#   GCP_PROJECT        project (default: gcloud's configured project)
#   POOL_NAME          node pool name (default dripml-gpu)
#   GPU_MACHINE_TYPE   machine type (default g2-standard-8); it must fit the GPU worker,
#                      4 CPUs and 16 GiB by default
#   GPU_ACCELERATOR    accelerator type (default nvidia-l4)
#   GPU_COUNT          GPUs per node (default 1)
#   MAX_NODES          autoscaling maximum per zone (default 4)
set -euo pipefail

src="${BASH_SOURCE[0]}"; [[ "$src" == */* ]] || src="./$src"
here="$(cd "${src%/*}" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
parse_common_args "$@"
require_env CLUSTER_NAME GCP_LOCATION
need gcloud

project=()
if [[ -n "${GCP_PROJECT:-}" ]]; then
  project=(--project "$GCP_PROJECT")
fi

run gcloud container node-pools create "${POOL_NAME:-dripml-gpu}" \
  --cluster "$CLUSTER_NAME" --location "$GCP_LOCATION" ${project[@]+"${project[@]}"} \
  --machine-type "${GPU_MACHINE_TYPE:-g2-standard-8}" \
  --accelerator "type=${GPU_ACCELERATOR:-nvidia-l4},count=${GPU_COUNT:-1},gpu-driver-version=default" \
  --num-nodes 0 --enable-autoscaling --min-nodes 0 --max-nodes "${MAX_NODES:-4}" \
  --node-taints nvidia.com/gpu=present:NoSchedule \
  --node-labels nvidia.com/gpu.present=true,dripml.io/node-pool=gpu
