#!/usr/bin/env bash
# Refresh constraints.txt, the tested set of versions the README's commands and CI install.
#
#   bash scripts/refresh_constraints.sh            # a new venv with the newest versions the package's ranges allow
#   bash scripts/refresh_constraints.sh --current  # the active environment as it is
#
# Either way the test suite runs first, and constraints.txt is rewritten only when it passes. TORCH_VERSION
# (default 2.13.0: the CPU build the project's machines install) picks the torch to test with; the file records
# it without its local label (2.13.0, not 2.13.0+cpu) so a CUDA build of the same version satisfies it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" != "--current" ]]; then
    venv="$(mktemp -d)/venv"
    python3 -m venv "$venv"
    . "$venv/bin/activate"
    pip install -q "torch==${TORCH_VERSION:-2.13.0}" setuptools wheel
    pip install -q --no-build-isolation -e ".[test]"
fi
python -m pytest tests -q
version() { python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
{
    echo "# The versions the test suite last passed with ($(uname -s) $(uname -m), Python $(python -c 'import platform; print(platform.python_version())'), $(date -u +%Y-%m-%d))."
    echo "# The README's commands and .ci/run install with \`-c constraints.txt\`; the package's own requirements"
    echo "# (pyproject.toml) stay ranges. Refresh with: bash scripts/refresh_constraints.sh (docs/dependencies.md)."
    pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*/\1/'
    echo "setuptools==$(version setuptools)"
    echo "wheel==$(version wheel)"
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pinned packages"
