#!/usr/bin/env bash
# Install Kubeflow Pipelines 2.17.0 standalone (the backend of the kfp 2.17 SDK that dripml
# compiles and submits pipelines with) from the project's kustomize manifests, pinned by tag.
# Namespace: kubeflow. Takes about 3 minutes.
#
# Usage: infra/kubeflow-pipelines/install.sh [--dry-run]
#   --dry-run   print the commands instead of running them (needs no cluster, no kubectl)
#
# Environment:
#   KFP_ENV   kustomize overlay under manifests/kustomize/env (default platform-agnostic:
#             MySQL and an object store in-cluster; "dev" adds GCP's inverse proxy)
set -euo pipefail

src="${BASH_SOURCE[0]}"; [[ "$src" == */* ]] || src="./$src"
here="$(cd "${src%/*}" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
parse_common_args "$@"

KFP_VERSION="2.17.0"
manifests="github.com/kubeflow/pipelines/manifests/kustomize"
overlay="${KFP_ENV:-platform-agnostic}"

need kubectl

run kubectl apply -k "$manifests/cluster-scoped-resources?ref=$KFP_VERSION"
run kubectl wait --for condition=established --timeout=60s crd/workflows.argoproj.io
run kubectl apply -k "$manifests/env/$overlay?ref=$KFP_VERSION"
run kubectl --namespace kubeflow wait --for condition=Available --timeout=10m deployment/ml-pipeline
