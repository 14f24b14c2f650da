#!/usr/bin/env bash
# Lint the deltadesk AWS SAM template (infra/template.yaml) with cfn-lint and checkov.
#
# Installs both tools, pinned, into a cached virtualenv at
# ${XDG_CACHE_HOME:-$HOME/.cache}/deltadesk-infra-venv (created on first run, reused after, so repeated runs
# take seconds), then lints from the repository root. Exits non-zero on any cfn-lint or checkov finding.
# checkov runs offline: BC_SKIP_MAPPING=TRUE and --skip-download.
set -euo pipefail

CFN_LINT_VERSION="1.58.0"
CHECKOV_VERSION="3.3.30"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/deltadesk-infra-venv"
STAMP="${VENV}/.deltadesk-lint-versions"
WANT="cfn-lint==${CFN_LINT_VERSION} checkov==${CHECKOV_VERSION}"
TEMPLATE="infra/template.yaml"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "${VENV}/bin/python" ]]; then
    echo "==> creating virtualenv ${VENV}"
    mkdir -p "$(dirname "${VENV}")"
    "${PYTHON}" -m venv "${VENV}"
fi

if [[ ! -x "${VENV}/bin/cfn-lint" || ! -x "${VENV}/bin/checkov" || "$(cat "${STAMP}" 2>/dev/null)" != "${WANT}" ]]; then
    echo "==> installing ${WANT} into ${VENV} (first run takes a minute or two)"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    # shellcheck disable=SC2086 # WANT is a list of requirement specifiers
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check ${WANT}
    echo "${WANT}" > "${STAMP}"
fi

cd "${REPO_ROOT}"

# Keep checkov offline: no Bridgecrew/Prisma Cloud guideline mapping download.
export BC_SKIP_MAPPING=TRUE

echo "==> cfn-lint ${CFN_LINT_VERSION}: ${TEMPLATE}"
"${VENV}/bin/cfn-lint" "${TEMPLATE}"
echo "cfn-lint: no findings"

echo "==> checkov ${CHECKOV_VERSION}: ${TEMPLATE}"
"${VENV}/bin/checkov" -f "${TEMPLATE}" --framework cloudformation \
    --skip-download --compact --quiet
echo "checkov: no findings"
