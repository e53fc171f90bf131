#!/usr/bin/env bash
# Shared set-up, sourced by every entry point (train_custom.sh, test.sh, quickstart.sh,
# run_tests.sh, .ci/run).  After sourcing, "$LSEG_PYTHON" is a Python 3.9 with
# requirements.txt installed.
#
#   LSEG_SKIP_SETUP=1  use the `python` already on PATH (an activated conda/venv that
#                      has the packages); nothing is created or installed.
#   PYTHON=/path       the Python 3.9 used to create .venv (default: search, see below).
#   LSEG_VENV=/path    where the venv lives (default: <repo>/.venv).
#
# A second run with an unchanged requirements.txt only compares a stamp file.

lseg_setup() {
    local repo
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    local req="$repo/requirements.txt"

    if [ "${LSEG_SKIP_SETUP:-0}" = "1" ]; then
        LSEG_PYTHON="$(command -v python || command -v python3)"
        if [ -z "$LSEG_PYTHON" ]; then
            echo "setup: LSEG_SKIP_SETUP=1 but no python on PATH; activate your environment first" >&2
            return 1
        fi
        export LSEG_PYTHON
        return 0
    fi

    local venv="${LSEG_VENV:-$repo/.venv}"
    local base=""
    if [ -n "${PYTHON:-}" ]; then
        if _lseg_is_py39 "$PYTHON"; then
            base="$PYTHON"
        else
            echo "setup: PYTHON=$PYTHON is not a working Python 3.9 interpreter." >&2
            _lseg_how_to_get_python >&2
            return 1
        fi
    elif _lseg_is_py39 python3.9; then
        base="$(command -v python3.9)"
    else
        local cand
        for cand in "$HOME"/.pyenv/versions/3.9.*/bin/python /usr/bin/python3.9 /usr/local/bin/python3.9; do
            if _lseg_is_py39 "$cand"; then base="$cand"; break; fi
        done
    fi
    if [ -z "$base" ]; then
        echo "setup: no Python 3.9 found (mindspore 2.0.0 + msadapter 0.1.0 need exactly 3.9)." >&2
        _lseg_how_to_get_python >&2
        return 1
    fi

    local stamp_want
    stamp_want="$("$base" -c 'import sys; print(sys.version.split()[0])') $(sha256sum "$req" | cut -d' ' -f1)"
    local stamp_file="$venv/.lseg-requirements-stamp"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_want" ]; then
        LSEG_PYTHON="$venv/bin/python"
        export LSEG_PYTHON
        return 0
    fi

    echo "setup: creating $venv with $base and installing requirements.txt (once, ~1 min)" >&2
    if [ ! -x "$venv/bin/python" ]; then
        "$base" -m venv "$venv" || { echo "setup: could not create a venv at $venv" >&2; return 1; }
    fi
    # pip's output is captured rather than piped: callers run under `set -o pipefail`, where a
    # filter that selects no line (a quiet, successful pip) would fail the whole set-up.
    local pip_log pip_rc=0
    pip_log="$("$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" 2>&1)" \
        || pip_rc=$?
    if [ -n "$pip_log" ]; then
        printf '%s\n' "$pip_log" | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
    fi
    if [ "$pip_rc" -ne 0 ]; then
        echo "setup: pip install -r $req failed (see above); nothing was recorded, the next run retries" >&2
        return 1
    fi
    "$venv/bin/python" -c "import mindspore, msadapter.pytorch, mindcv" 2>/dev/null || {
        echo "setup: packages installed but 'import mindspore, msadapter.pytorch, mindcv' fails" >&2
        return 1
    }
    echo "$stamp_want" > "$stamp_file"
    LSEG_PYTHON="$venv/bin/python"
    export LSEG_PYTHON
}

_lseg_is_py39() {
    local out
    out="$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || return 1
    [ "$out" = "3.9" ]
}

_lseg_how_to_get_python() {
    cat <<'MSG'
Get a Python 3.9 and point PYTHON at it, for example:
    conda create -n lseg python=3.9 && PYTHON="$(conda run -n lseg which python)" bash <script>
    pyenv install 3.9.18            (then the set-up finds ~/.pyenv/versions/3.9.*/bin/python)
    apt-get install python3.9 python3.9-venv
Or activate an environment that already has requirements.txt and set LSEG_SKIP_SETUP=1.
MSG
}
