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

# The browser tests (tests/ui) drive Debian's Chromium through Playwright. When scripts/test runs as root and
# /usr/bin/chromium is missing, it is installed from Debian packages; if that fails the run goes on and those
# tests are skipped, saying why.
if [ "$(basename "$0")" = "test" ] && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "==> installing chromium for the browser tests (apt-get)" >&2
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
            </dev/null >/dev/null || echo "==> could not install chromium: the browser tests will be skipped" >&2
    else
        echo "==> /usr/bin/chromium is missing and we are not root: the browser tests will be skipped" >&2
    fi
fi
