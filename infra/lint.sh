#!/usr/bin/env bash
# Lint the deltadesk AWS SAM template with cfn-lint and checkov.
#
# Installs both tools (if missing) into a cached virtualenv so repeated runs
# are quick, then lints infra/template.yaml from the repository root.
# Exits non-zero on any cfn-lint or checkov finding.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/deltadesk-infra-venv"
TEMPLATE="infra/template.yaml"

PYTHON="${PYTHON:-python3}"

if [[ ! -x "${VENV}/bin/python" ]]; then
    echo "==> creating virtualenv ${VENV}"
    mkdir -p "$(dirname "${VENV}")"
    "${PYTHON}" -m venv "${VENV}"
fi

missing=()
[[ -x "${VENV}/bin/cfn-lint" ]] || missing+=("cfn-lint")
[[ -x "${VENV}/bin/checkov" ]] || missing+=("checkov")
if (( ${#missing[@]} > 0 )); then
    echo "==> installing ${missing[*]} into ${VENV}"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi

cd "${REPO_ROOT}"

# Keep checkov fully offline: no Bridgecrew/Prisma platform mapping download.
export BC_SKIP_MAPPING=TRUE

echo "==> cfn-lint $("${VENV}/bin/cfn-lint" --version 2>&1 | awk '{print $NF}')"
"${VENV}/bin/cfn-lint" "${TEMPLATE}"
echo "cfn-lint: no findings"

echo "==> checkov $("${VENV}/bin/checkov" --version 2>&1 | tail -n1)"
"${VENV}/bin/checkov" -f "${TEMPLATE}" --framework cloudformation \
    --skip-download --compact --quiet
echo "checkov: no findings"
