# Sourced by tools/*: make sure .venv exists and holds this checkout's package
# with its test extras.  Reinstalls only when pyproject.toml changed.
VENV="${SHAREDDISK_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
stamp="$VENV/.shareddisk-installed"
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install --quiet -e '.[test]'
    cp pyproject.toml "$stamp"
fi
