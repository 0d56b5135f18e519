#!/usr/bin/env bash
# Checks the container image definition and the Kubernetes manifests, without a cluster
# or a container engine. Called by .ci/run; run it by hand after editing deploy/ or k8s/:
#
#   bash .ci/install && bash k8s/validate.sh
#
#  1. deploy/Dockerfile: hadolint, and checkov's Dockerfile checks.
#  2. The image is built only where a container engine answers (`docker info`); set
#     WEIR_IMAGE_BUILD=0 to skip it there too. This check builds it without the profile-
#     guided pass (PGO=0, half the time); WEIR_IMAGE_PGO=1 builds it as shipped.
#  3. k8s/base and every overlay in k8s/overlays/ render with `kubectl kustomize`.
#  4. Each overlay's output is valid against the Kubernetes 1.32 schemas and the vendored
#     CRD schemas (k8s/schemas/), strictly, plus the cross-checks of k8s/validate.py.
#  5. The alert rules pass `promtool check rules` and their unit tests
#     (k8s/components/monitoring/prometheusrule.test.yaml).
#  6. checkov's Kubernetes checks pass on each overlay's output; a deliberate exception is
#     a `checkov.io/skipN: CKV_K8S_NN=<reason>` annotation on the object.
# The tools come from what .ci/install keeps under $WEIR_CACHE: the venv-ops venv and
# promtool (taken from Debian's prometheus package, not installed as a service).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
BIN="$CACHE/venv-ops/bin"
PROMTOOL="$CACHE/promtool/usr/bin/promtool"
for tool in "$BIN/hadolint" "$BIN/kubectl" "$BIN/checkov" "$BIN/python" "$PROMTOOL"; do
  if [ ! -x "$tool" ]; then
    echo "k8s: $tool missing: run bash .ci/install first" >&2
    exit 1
  fi
done
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
# checkov: no calls home (its guideline download fails without a network anyway).
CHECKOV=("$BIN/checkov" --quiet --compact --skip-download)

echo "k8s: hadolint deploy/Dockerfile"
"$BIN/hadolint" --no-color deploy/Dockerfile
echo "k8s: checkov deploy/Dockerfile"
"${CHECKOV[@]}" --framework dockerfile -f deploy/Dockerfile

if [ "${WEIR_IMAGE_BUILD:-1}" != 0 ] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "k8s: docker build -f deploy/Dockerfile --build-arg PGO=${WEIR_IMAGE_PGO:-0}"
  docker build -f deploy/Dockerfile --build-arg "PGO=${WEIR_IMAGE_PGO:-0}" -t weir:ci .
else
  echo "k8s: no container engine answers here (docker info failed or WEIR_IMAGE_BUILD=0): image build skipped"
fi

# The base on its own leaves the image unset, so it is only rendered; the overlays are
# what gets applied, and each is checked in full.
echo "k8s: kubectl kustomize k8s/base"
"$BIN/kubectl" kustomize k8s/base > "$OUT/base.yaml.txt"
rendered=()
for dir in k8s/overlays/*/; do
  [ -f "$dir/kustomization.yaml" ] || continue
  name="$(basename "$dir")"
  echo "k8s: kubectl kustomize $dir"
  "$BIN/kubectl" kustomize "$dir" > "$OUT/$name.yaml"
  rendered+=("$OUT/$name.yaml")
done
if [ "${#rendered[@]}" -eq 0 ]; then
  echo "k8s: no overlay found under k8s/overlays" >&2
  exit 1
fi

"$BIN/python" k8s/validate.py --rules-out "$OUT/rules" "${rendered[@]}"

# The alert rules as each overlay renders them: PromQL and templates parse, and the
# unit tests next to them pass.
for dir in "$OUT"/rules/*/; do
  [ -d "$dir" ] || continue
  echo "k8s: promtool on the alert rules of $(basename "$dir")"
  "$PROMTOOL" check rules "$dir/weir-rules.yaml"
  cp k8s/components/monitoring/prometheusrule.test.yaml "$dir/"
  "$PROMTOOL" test rules "$dir/prometheusrule.test.yaml"
done

echo "k8s: checkov on ${#rendered[@]} rendered overlays"
mkdir "$OUT/checkov"
cp "${rendered[@]}" "$OUT/checkov/"
"${CHECKOV[@]}" --framework kubernetes -d "$OUT/checkov"
echo "k8s: manifests and Dockerfile ok"
