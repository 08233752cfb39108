# Sourced by tools/* shell scripts: headings in bold on a terminal, plain text
# into a pipe or a file (no escape codes in logs), and never with NO_COLOR set.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ] && [ "${TERM:-dumb}" != dumb ]; then
    _bold=$'\033[1m' _plain=$'\033[0m'
else
    _bold= _plain=
fi
say() { printf '\n%s== %s%s\n' "$_bold" "$*" "$_plain"; }
