#!/bin/sh
# The shipped alert rules: promtool's syntax and expression check, then its
# unit tests (optgate-rules.test.yml: every alert fires when it should and
# not before). promtool comes with Debian's prometheus package (scripts/setup).
#
# usage: rules.sh SOURCE_ROOT
set -eu
root="$1"
promtool="${PROMTOOL:-/usr/bin/promtool}"
if [ ! -x "$promtool" ]; then
  echo "rules.sh: $promtool not found: install Debian's prometheus package (scripts/setup)" >&2
  exit 1
fi
"$promtool" check rules "$root/config/prometheus/optgate-rules.yml"
# Rule files in the test are relative to it.
cd "$root/tests/prometheus"
"$promtool" test rules optgate-rules.test.yml
