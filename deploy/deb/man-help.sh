#!/bin/sh
# What help2man reads to write tlsrelay(1): `tlsrelay --help`, then the --help
# of every subcommand (found in the "Subcommands:" lists, so new ones appear
# by themselves), each as its own manual section "TLSRELAY <COMMAND>".
# help2man calls it with --help or --version; $TLSRELAY_BINARY is the binary.
set -eu
bin=${TLSRELAY_BINARY:?TLSRELAY_BINARY must name the tlsrelay binary}

# The subcommand names listed in the --help of "$@".
subcommands() {
  "$bin" "$@" --help | awk '/^Subcommands:/ { in_list = 1; next }
                            /^[^ ]/ { in_list = 0 }
                            in_list && /^  [a-z]/ { print $1 }'
}

# One section per command that has options of its own; a command with
# subcommands (certs) is a heading for those instead.
describe() {
  subs=$(subcommands "$@")
  if [ -n "$subs" ]; then
    for sub in $subs; do describe "$@" "$sub"; done
    return
  fi
  printf '\n*tlsrelay %s*\n\n' "$*"
  # help2man takes an unindented "Options:" for its own OPTIONS section, and
  # joins the description and the usage line unless a blank line parts them.
  "$bin" "$@" --help | sed -e "s/^Options:\$/Options of tlsrelay $*:/" -e 's/^Usage: /\nUsage: /'
}

case "${1:-}" in
  --help)
    "$bin" --help
    for cmd in $(subcommands); do describe "$cmd"; done
    ;;
  --version)
    # Unused: the build passes --version-string from CMake's project().
    echo "tlsrelay"
    ;;
  *) exit 2 ;;
esac
