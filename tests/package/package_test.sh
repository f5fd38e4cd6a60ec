#!/usr/bin/env bash
# The packages as an operator meets them (issue 20, docs/deploy.md#install-from-packages):
# builds them (scripts/package), installs them with dpkg -i on this machine,
# checks the policy and the data plane's config with the installed tools,
# starts the installed consentd by hand as its user with the installed
# config (no systemd in CI), binds, grants and shows a consent through the
# installed optgatectl, replays the sample capture with the installed
# optgate-replay against that consentd (before and after the grant), checks
# the units with systemd-analyze verify; then removes (conffiles, ledger and
# user stay), purges, and checks nothing is left. Needs root. Refuses to run
# where optgate is installed or its user, /etc/optgate or the state exist:
# it must leave the machine as it found it, also when it fails (trap).
#
#   tests/package/package_test.sh            # builds the packages first (build-package/)
#   tests/package/package_test.sh DEB_DIR    # uses the .debs in DEB_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
packages=(optgate-common optgate consentd optgatectl)
# Everything the packages create, outside dpkg's file lists too.
leftovers=(/etc/optgate /var/lib/consentd /var/lib/optgate-dataplane /run/optgate /usr/share/doc/optgate)
binaries=(/usr/bin/optgate /usr/bin/optgate-replay /usr/bin/consentd /usr/bin/optgatectl)

fail() {
  echo "package-test: FAILED: $*" >&2
  exit 1
}
step() { echo "package-test: $*"; }

[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i, a system user)"
for p in "${packages[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qv "not-installed"; then
    fail "$p is installed (or its conffiles are): this test would purge it; dpkg --purge ${packages[*]} first"
  fi
done
getent passwd optgate >/dev/null && fail "the user optgate exists: this test would delete it"
getent group optgate >/dev/null && fail "the group optgate exists: this test would delete it"
for f in "${leftovers[@]}" "${binaries[@]}"; do
  [ -e "$f" ] && fail "$f exists: this test would delete it"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/optgate-package-test.XXXXXX")
chmod 0755 "$tmp"
consentd_pid=
before_packages="$tmp/packages.before"
dpkg-query -W -f='${Package}\n' | sort >"$before_packages"

cleanup() {
  local rc=$?
  set +e
  if [ -n "$consentd_pid" ] && kill -0 "$consentd_pid" 2>/dev/null; then
    kill -KILL "$consentd_pid"
    wait "$consentd_pid" 2>/dev/null
  fi
  local present=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qv "not-installed" && present+=("$p")
  done
  ((${#present[@]})) && dpkg --purge "${present[@]}" >"$tmp/cleanup-purge.log" 2>&1
  # What this test (or apt-get install -f) installed besides ours.
  local added=()
  mapfile -t added < <(dpkg-query -W -f='${Package}\n' | sort | comm -13 "$before_packages" -)
  ((${#added[@]})) && DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "${added[@]}" >/dev/null 2>&1
  # None of these existed before (checked above).
  rm -rf "${leftovers[@]}"
  rm -f "${binaries[@]}"
  getent passwd optgate >/dev/null && userdel optgate
  getent group optgate >/dev/null && groupdel optgate
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

start=$SECONDS
debdir=
if [ $# -ge 1 ]; then
  debdir=$1
else
  # Into scripts/package's own build-package/: a stable path under the
  # checkout, so that ccache (base_dir) serves the next run's compiles.
  step "building the packages (scripts/package)"
  scripts/package >"$tmp/package.log" 2>&1 || {
    cat "$tmp/package.log" >&2
    fail "scripts/package failed"
  }
  debdir=build-package
fi
# Ours, not the -dbgsym packages.
debs=()
for p in "${packages[@]}"; do
  f=$(find "$debdir" -maxdepth 1 -name "${p}_*.deb" | head -n 1)
  [ -n "$f" ] || fail "no ${p}_*.deb in $debdir"
  debs+=("$f")
done
step "built in $((SECONDS - start)) s: ${debs[*]##*/}"

step "dpkg -i"
if ! dpkg -i "${debs[@]}" >"$tmp/install.log" 2>&1; then
  step "dpkg -i left dependencies missing: apt-get install -f (removed again at the end)"
  DEBIAN_FRONTEND=noninteractive apt-get install -f -y -q >>"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2
    fail "the packages do not install"
  }
fi
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" | grep -q "install ok installed" || fail "$p is not installed: $(dpkg-query -W -f='${Status}' "$p")"
done

step "what was installed"
for b in "${binaries[@]}"; do [ -x "$b" ] || fail "$b missing"; done
uid=$(id -u optgate) || fail "no user optgate"
[ "$uid" -lt 1000 ] || fail "optgate is not a system user (uid $uid)"
[ "$(id -gn optgate)" = optgate ] || fail "optgate's group is $(id -gn optgate)"
[ "$(stat -c '%U:%G %a' /var/lib/consentd)" = "optgate:optgate 700" ] ||
  fail "/var/lib/consentd is $(stat -c '%U:%G %a' /var/lib/consentd), not optgate:optgate 700"
[ "$(stat -c '%U:%G %a' /etc/optgate/consentd.yaml)" = "root:optgate 640" ] ||
  fail "/etc/optgate/consentd.yaml is $(stat -c '%U:%G %a' /etc/optgate/consentd.yaml), not root:optgate 640"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' "${packages[@]}")
for c in /etc/optgate/consentd.yaml /etc/optgate/policy.yaml /etc/optgate/optgate.yaml; do
  grep -q "^ $c " <<<"$conffiles" || fail "$c is not a conffile"
done
for m in man8/optgate.8 man8/consentd.8 man1/optgatectl.1 man1/optgate-replay.1 man5/optgate-policy.5; do
  page=/usr/share/man/$m.gz
  [ -f "$page" ] || fail "$page missing"
  name=$(basename "$m")
  zcat "$page" | grep -q "^\.TH \"${name%.*}\" \"${name##*.}\"" -i || fail "$page has no .TH ${name%.*} ${name##*.} header"
done
for u in consentd optgate; do
  unit=/lib/systemd/system/$u.service
  [ -f "$unit" ] || fail "$unit missing"
  grep -q "^ExecStart=/usr/bin/$u " "$unit" || fail "$unit does not start /usr/bin/$u"
  grep -q "/usr/local" <(grep -E '^(Exec|Documentation)' "$unit") && fail "$unit still points into /usr/local"
  doc=$(sed -n 's,^Documentation=file://,,p' "$unit")
  [ -f "$doc" ] || fail "$unit: Documentation= $doc missing"
done

step "optgatectl check /etc/optgate/policy.yaml"
optgatectl check /etc/optgate/policy.yaml || fail "the installed policy does not check"
optgate --check-config /etc/optgate/optgate.yaml || fail "the installed optgate.yaml does not check"

if command -v systemd-analyze >/dev/null; then
  step "systemd-analyze verify"
  # dpdk.service (optgate.service's Wants=, After=) comes with Debian's dpdk
  # package, only recommended: a missing one is not a fault of the unit.
  systemd-analyze verify /lib/systemd/system/consentd.service /lib/systemd/system/optgate.service \
    >"$tmp/verify.log" 2>&1 || true
  if grep -v -e 'dpdk\.service' "$tmp/verify.log" | grep -q .; then
    cat "$tmp/verify.log" >&2
    fail "systemd-analyze verify complains about the units"
  fi
  cat "$tmp/verify.log"
fi

step "consentd, by hand, as optgate, with the installed config"
# What an operator does first: an admin token of their own, in place of the
# example's placeholder hash; and a free port (the example's 8470 may be taken).
token=$(openssl rand -hex 32)
hash=$(printf '%s' "$token" | consentd --hash-token)
placeholder=3333333333333333333333333333333333333333333333333333333333333333
grep -q "$placeholder" /etc/optgate/consentd.yaml || fail "the ops token's placeholder is not in /etc/optgate/consentd.yaml"
sed -i -e "s/$placeholder/$hash/" -e 's/^  port: 8470$/  port: 0/' /etc/optgate/consentd.yaml
grep -q '^  port: 0$' /etc/optgate/consentd.yaml || fail "could not set the API port in /etc/optgate/consentd.yaml"
# What systemd's RuntimeDirectory= would make.
install -d -o optgate -g optgate -m 0750 /run/optgate
install -d -o optgate -g optgate -m 0700 "$tmp/run"
as_optgate=(setpriv --reuid=optgate --regid=optgate --init-groups --)
"${as_optgate[@]}" consentd --check-config /etc/optgate/consentd.yaml || fail "consentd --check-config fails as optgate"
"${as_optgate[@]}" consentd --config /etc/optgate/consentd.yaml --port-file "$tmp/run/port" >"$tmp/consentd.log" 2>&1 &
consentd_pid=$!
deadline=$((SECONDS + 60))
until [ -s "$tmp/run/port" ] && [ -S /run/optgate/consentd.sock ]; do
  kill -0 "$consentd_pid" 2>/dev/null || { cat "$tmp/consentd.log" >&2; fail "consentd exited at start"; }
  [ $SECONDS -lt $deadline ] || { cat "$tmp/consentd.log" >&2; fail "consentd did not listen within 60 s"; }
  sleep 0.2
done
[ -f /var/lib/consentd/consentd.db ] || fail "no ledger in /var/lib/consentd"
[ "$(stat -c %U /var/lib/consentd/consentd.db)" = optgate ] || fail "the ledger does not belong to optgate"
OPTGATE_SERVER="http://127.0.0.1:$(cat "$tmp/run/port")"
export OPTGATE_SERVER OPTGATE_TOKEN="$token"

# The sample capture's sub-1001 (tools/sample_traffic.cpp, as scripts/demo binds it).
sample=/usr/share/doc/optgate/examples/sample.pcap
[ -f "$sample" ] || fail "$sample missing"
optgatectl bind 100.64.0.10 sub-1001 --source package-test >/dev/null || fail "optgatectl bind failed"
optgatectl bind 2001:db8:1000:1::/64 sub-1001 --source package-test >/dev/null || fail "optgatectl bind failed"
replay() {
  optgate-replay --control /run/optgate/consentd.sock --name package-test --disclosure-entries 0 --quiet \
    --report "$tmp/$1.json" "$sample" "$tmp/$1.pcap" || fail "optgate-replay ($1) failed"
  /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counters"]["verdict_pass_consent"])' "$tmp/$1.json"
}
step "optgate-replay before the grant"
passed_before=$(replay before)
[ "$passed_before" -eq 0 ] || fail "identifiers passed on consent before any grant: $passed_before"
step "optgatectl grant, show"
optgatectl grant sub-1001 advertising --source package-test --notice-version package-test --wait >"$tmp/grant.json" ||
  fail "optgatectl grant failed"
optgatectl show sub-1001 --json >"$tmp/show.json" || fail "optgatectl show failed"
/usr/bin/python3 - "$tmp/show.json" <<'PY' || fail "optgatectl show does not show the grant: $(cat "$tmp/show.json")"
import json, sys
s = json.load(open(sys.argv[1]))
consents = {c["purpose"]: c for c in s["consents"]}
assert set(consents) == {"advertising"}, consents
assert consents["advertising"]["source"] == "package-test", consents
assert consents["advertising"]["credential"] == "ops", consents  # the token the test put in place of ops' placeholder
bound = {b["address"] for b in s["bindings"] if b["active"]}
assert bound == {"100.64.0.10", "2001:db8:1000:1::/64"}, bound
PY
optgatectl show sub-1001 --utc | grep -q advertising || fail "optgatectl show's table lacks advertising"
step "optgate-replay after the grant"
passed_after=$(replay after)
[ "$passed_after" -gt 0 ] || fail "no identifier passed on consent after the grant"
step "replayed: $passed_before identifiers passed on consent before the grant, $passed_after after"

step "stopping consentd (SIGTERM)"
kill -TERM "$consentd_pid"
rc=0
wait "$consentd_pid" || rc=$?
consentd_pid=
[ "$rc" -eq 0 ] || { cat "$tmp/consentd.log" >&2; fail "consentd exited $rc on SIGTERM"; }
rm -rf /run/optgate   # as systemd would on stop

step "dpkg -r: conffiles, the ledger and the user stay"
dpkg -r "${packages[@]}" >"$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log" >&2; fail "dpkg -r failed"; }
for b in "${binaries[@]}"; do [ -e "$b" ] && fail "$b left after dpkg -r"; done
[ -f /etc/optgate/consentd.yaml ] || fail "dpkg -r removed the conffile /etc/optgate/consentd.yaml"
[ -f /var/lib/consentd/consentd.db ] || fail "dpkg -r removed the ledger"
getent passwd optgate >/dev/null || fail "dpkg -r removed the user"

step "dpkg --purge: nothing left"
dpkg --purge "${packages[@]}" >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "dpkg --purge failed"; }
left=()
for f in "${leftovers[@]}" "${binaries[@]}" /lib/systemd/system/consentd.service /lib/systemd/system/optgate.service \
  /usr/share/man/man8/optgate.8.gz /usr/share/man/man5/optgate-policy.5.gz; do
  [ -e "$f" ] && left+=("$f")
done
((${#left[@]} == 0)) || fail "left after purge: ${left[*]}"
getent passwd optgate >/dev/null && fail "the user optgate is left after purge"
getent group optgate >/dev/null && fail "the group optgate is left after purge"
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qv "not-installed" && fail "dpkg still knows $p after purge"
done
step "ok in $((SECONDS - start)) s"
