# Sourced by the side-environment scripts (parity.sh, lmms_eval_plugin.sh, export_roundtrip.sh) from the repository
# root: `side_env DIR EXTRAS` creates the virtual environment DIR if it is missing and installs the harness editable
# with EXTRAS (e.g. "parity,dev") under constraints.txt (torch 2.14.1 + torchvision 0.29.1, decord 0.6.0, as .venv).
# lmms-eval 0.7.3 pins av<16, so these environments never share .venv.
side_env() {
    local dir="$1" extras="$2"
    if [ ! -x "$dir/bin/python" ]; then
        python3 -m venv "$dir"
        "$dir/bin/pip" install --quiet --upgrade pip
    fi
    "$dir/bin/pip" install --quiet -c constraints.txt -e ".[$extras]"
}
