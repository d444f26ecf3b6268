# Shared set-up for scripts/demo and scripts/test: uv on PATH, the machine's Python, the locked dependencies.
# Sourced, not run. Works as root or not, with or without a virtualenv, with CI=true and no stdin.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export UV_PYTHON_DOWNLOADS=never   # use the machine's Python 3.11+, never download one
export PATH="$HOME/.local/bin:$PATH"

if ! command -v uv >/dev/null 2>&1; then
    echo "==> installing uv with pip" >&2
    python3 -m pip install --quiet --user uv 2>/dev/null \
        || python3 -m pip install --quiet uv 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages uv
    hash -r
fi
if ! command -v uv >/dev/null 2>&1; then
    uv() { python3 -m uv "$@"; }   # pip put uv somewhere not on PATH: run it as a module
fi

echo "==> installing jishi and its locked dependencies (uv sync --locked)" >&2
uv sync --locked --quiet
