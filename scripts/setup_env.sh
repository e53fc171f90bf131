#!/usr/bin/env bash
# Shared set-up, sourced by every entry point (train_custom.sh, test.sh, quickstart.sh, run_tests.sh, .ci/run).
# After sourcing and calling lseg_setup, "$LSEG_PYTHON" is an interpreter with the chosen stack installed.
#
#   LSEG_STACK=current  (default) Python 3.11 (3.10 accepted) + mindspore 2.10.0: requirements.txt, venv .venv
#   LSEG_STACK=legacy   Python 3.9 + mindspore 2.0.0 + msadapter 0.1.0: requirements-legacy.txt, venv .venv-legacy
#   LSEG_SKIP_SETUP=1   use the `python` already on PATH (an activated conda/venv that has the packages);
#                       nothing is created or installed.
#   PYTHON=/path        the interpreter used to create the venv (default: searched, see _lseg_find_python).
#   LSEG_VENV=/path     where the venv lives (default: see above).
#
# A second run with unchanged requirements only compares a stamp file.

lseg_setup() {
    local repo
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    local stack="${LSEG_STACK:-current}"
    local req default_venv versions import_check post_install=""
    case "$stack" in
        current)
            req="$repo/requirements.txt"; default_venv="$repo/.venv"; versions="3.11 3.10"
            import_check="import mindspore, mindcv" ;;
        legacy)
            req="$repo/requirements-legacy.txt"; default_venv="$repo/.venv-legacy"; versions="3.9"
            # MindSpore 2.0.0 reads PIL.Image names Pillow 10 removed: a start-up import puts them back
            post_install="$repo/scripts/pillow_aliases.py"
            import_check="import mindspore, msadapter.pytorch, mindcv" ;;
        *)
            echo "setup: LSEG_STACK=$stack is not a stack; use current (default) or legacy" >&2
            return 1 ;;
    esac
    export LSEG_STACK="$stack"

    if [ "${LSEG_SKIP_SETUP:-0}" = "1" ]; then
        LSEG_PYTHON="$(command -v python || command -v python3)"
        if [ -z "$LSEG_PYTHON" ]; then
            echo "setup: LSEG_SKIP_SETUP=1 but no python on PATH; activate your environment first" >&2
            return 1
        fi
        export LSEG_PYTHON
        return 0
    fi

    local venv="${LSEG_VENV:-$default_venv}"
    local base=""
    if [ -n "${PYTHON:-}" ]; then
        if _lseg_python_is "$PYTHON" $versions; then
            base="$PYTHON"
        else
            echo "setup: PYTHON=$PYTHON is not a working Python ${versions// / or } interpreter (stack $stack)." >&2
            _lseg_how_to_get_python "$stack" >&2
            return 1
        fi
    else
        base="$(_lseg_find_python $versions)" || base=""
    fi
    if [ -z "$base" ]; then
        echo "setup: no Python ${versions// / or } found for the $stack stack." >&2
        _lseg_how_to_get_python "$stack" >&2
        return 1
    fi

    local stamp_want
    stamp_want="$("$base" -c 'import sys; print(sys.version.split()[0])') $(cat "$req" ${post_install:+"$post_install"} | sha256sum | cut -d' ' -f1)"
    local stamp_file="$venv/.lseg-requirements-stamp"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_want" ]; then
        LSEG_PYTHON="$venv/bin/python"
        export LSEG_PYTHON
        return 0
    fi

    echo "setup: creating $venv with $base and installing $(basename "$req") (once, ~1-2 min)" >&2
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
    if [ -n "$post_install" ] && ! "$venv/bin/python" "$post_install" --install >/dev/null; then
        echo "setup: $post_install --install failed in $venv" >&2
        return 1
    fi
    "$venv/bin/python" -c "$import_check" 2>/dev/null || {
        echo "setup: packages installed but '$import_check' fails in $venv" >&2
        return 1
    }
    echo "$stamp_want" > "$stamp_file"
    LSEG_PYTHON="$venv/bin/python"
    export LSEG_PYTHON
}

# _lseg_python_is INTERPRETER VERSION... : true when INTERPRETER runs and is one of the X.Y versions.
_lseg_python_is() {
    local interpreter="$1" out want
    shift
    out="$("$interpreter" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || return 1
    for want in "$@"; do
        [ "$out" = "$want" ] && return 0
    done
    return 1
}

# _lseg_find_python VERSION... : prints the first interpreter found, trying the versions in order, each as
# pyenv's ~/.pyenv/versions/X.Y.*, pythonX.Y on PATH, /usr/bin and /usr/local/bin.
_lseg_find_python() {
    local want cand
    for want in "$@"; do
        for cand in "$HOME"/.pyenv/versions/"$want".*/bin/python "$(command -v "python$want" 2>/dev/null)" \
                    /usr/bin/python"$want" /usr/local/bin/python"$want"; do
            [ -n "$cand" ] || continue
            if _lseg_python_is "$cand" "$want"; then
                echo "$cand"
                return 0
            fi
        done
    done
    return 1
}

_lseg_how_to_get_python() {
    if [ "$1" = "legacy" ]; then
        cat <<'MSG'
The legacy stack (mindspore 2.0.0 + msadapter 0.1.0) needs exactly Python 3.9. For example:
    conda create -n lseg39 python=3.9 && PYTHON="$(conda run -n lseg39 which python)" LSEG_STACK=legacy bash <script>
    pyenv install 3.9.18            (then the set-up finds ~/.pyenv/versions/3.9.*/bin/python)
    apt-get install python3.9 python3.9-venv
Or activate an environment that already has requirements-legacy.txt and set LSEG_SKIP_SETUP=1.
MSG
    else
        cat <<'MSG'
The current stack (mindspore 2.10.0) needs Python 3.11 or 3.10. For example:
    conda create -n lseg python=3.11 && PYTHON="$(conda run -n lseg which python)" bash <script>
    pyenv install 3.11.7            (then the set-up finds ~/.pyenv/versions/3.11.*/bin/python)
    apt-get install python3.11 python3.11-venv
Or activate an environment that already has requirements.txt and set LSEG_SKIP_SETUP=1.
MSG
    fi
}
