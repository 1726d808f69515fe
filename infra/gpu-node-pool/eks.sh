#!/usr/bin/env bash
# Create the example EKS GPU nodegroup (eks-nodegroup.yaml beside this file) in an existing
# cluster: g6.2xlarge/g5.2xlarge, 0 to 4 nodes, taint nvidia.com/gpu=present:NoSchedule, label
# nvidia.com/gpu.present=true. Uses your AWS credentials as eksctl finds them; none are
# stored here.
#
# Usage: CLUSTER_NAME=... AWS_REGION=... infra/gpu-node-pool/eks.sh [--dry-run]
#   --dry-run   print the rendered config and the eksctl command instead of running them
#
# Environment:
#   CLUSTER_NAME   the EKS cluster (required)
#   AWS_REGION     its region, e.g. us-east-1 (required)
set -euo pipefail

src="${BASH_SOURCE[0]}"; [[ "$src" == */* ]] || src="./$src"
here="$(cd "${src%/*}" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
parse_common_args "$@"
require_env CLUSTER_NAME AWS_REGION
need eksctl

config="$(<"$here/eks-nodegroup.yaml")"
# The patterns are the literal placeholders ${CLUSTER_NAME} and ${AWS_REGION} in the file.
# shellcheck disable=SC2016
config="${config//'${CLUSTER_NAME}'/$CLUSTER_NAME}"
# shellcheck disable=SC2016
config="${config//'${AWS_REGION}'/$AWS_REGION}"

if [[ "$DRY_RUN" == 1 ]]; then
  rendered="eks-nodegroup.rendered.yaml"
  printf "cat > %s <<'YAML'\n%s\nYAML\n" "$rendered" "$config"
else
  rendered="$(mktemp "${TMPDIR:-/tmp}/dripml-eks-nodegroup.XXXXXX.yaml")"
  trap 'rm -f "$rendered"' EXIT
  printf '%s\n' "$config" >"$rendered"
fi
run eksctl create nodegroup --config-file "$rendered" --install-nvidia-plugin=false
