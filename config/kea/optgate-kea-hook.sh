#!/bin/sh
# Feeds consentd's bindings from Kea DHCP (docs/radius.md, "DHCP: Kea"):
# the script for Kea's run_script hook (libdhcp_run_script.so), which calls
# it with the hook point as $1 and the lease in environment variables.
#
#   leases4_committed, leases6_committed  bind each lease's address (IPv6:
#                                          address or delegated prefix) to its subscriber
#   lease4_release, lease4_expire, lease4_decline,
#   lease6_release, lease6_expire, lease6_decline
#                                          unbind it, only from that subscriber
#
# Subscribers come from a map file, one "CLIENT SUBSCRIBER" per line, where
# CLIENT is the lease's hardware address (DHCPv4, as Kea prints it:
# 02:00:00:00:00:01) or DUID (DHCPv6); leases of clients not in the map are
# left alone. Configuration (environment, e.g. in Kea's systemd unit):
#   OPTGATE_KEA_MAP      the map file (default /etc/optgate/kea-subscribers)
#   OPTGATE_SERVER       consentd's API (optgatectl's default if unset)
#   OPTGATE_TOKEN_FILE   a file holding a write token (or OPTGATE_TOKEN, as for optgatectl)
#   OPTGATECTL           the optgatectl binary (default: optgatectl on PATH)
#   OPTGATE_KEY_LENGTH   the policy's subscribers.ipv6_key_length (default 64): a
#                        delegated prefix shorter than it is bound as each key it
#                        covers (needs python3 for the arithmetic)
# With "sync": false in Kea's hook parameters, Kea does not wait for it.
# Exit status: 0, or optgatectl's when a call failed (Kea logs it).
set -u
map="${OPTGATE_KEA_MAP:-/etc/optgate/kea-subscribers}"
ctl="${OPTGATECTL:-optgatectl}"
status=0

call() {
    if [ -n "${OPTGATE_TOKEN_FILE:-}" ]; then
        "$ctl" "$@" --token-file "$OPTGATE_TOKEN_FILE"
    else
        "$ctl" "$@"
    fi
}

subscriber_of() {  # CLIENT -> SUBSCRIBER on stdout, or nothing
    [ -n "$1" ] && [ -r "$map" ] || return 0
    awk -v c="$1" 'tolower($1) == tolower(c) { print $2; exit }' "$map"
}

bind() {  # ADDRESS CLIENT
    sub="$(subscriber_of "$2")"
    [ -n "$1" ] && [ -n "$sub" ] || return 0
    for key in $(keys "$1"); do
        call bind "$key" "$sub" --source dhcp || status=$?
    done
}

unbind() {  # ADDRESS CLIENT
    sub="$(subscriber_of "$2")"
    [ -n "$1" ] && [ -n "$sub" ] || return 0
    # --subscriber: a late release must not unbind the address's next holder.
    for key in $(keys "$1"); do
        call unbind "$key" --subscriber "$sub" --source dhcp || status=$?
    done
}

# The bindings an address or prefix stands for: itself, or each key of a
# prefix shorter than the key length.
keys() {  # ADDRESS[/LEN]
    case "$1" in
    */*)
        len="${1#*/}"
        if [ "$len" -lt "${OPTGATE_KEY_LENGTH:-64}" ]; then
            python3 -c 'import ipaddress, sys
for n in ipaddress.IPv6Network(sys.argv[1]).subnets(new_prefix=int(sys.argv[2])): print(n)' \
                "$1" "${OPTGATE_KEY_LENGTH:-64}"
            return
        fi
        echo "${1%/*}"  # a longer prefix: its address names its key
        ;;
    *) echo "$1" ;;
    esac
}

# An IPv6 lease: an address (IA_NA) or a delegated prefix (IA_PD, "ADDR/LEN").
v6() {  # ADDRESS PREFIX_LEN TYPE
    case "$3" in
    IA_PD) echo "$1/$2" ;;
    *) echo "$1" ;;
    esac
}

i=0
case "${1:-}" in
leases4_committed)
    while [ "$i" -lt "${LEASES4_SIZE:-0}" ]; do
        eval "bind \"\${LEASES4_AT${i}_ADDRESS:-}\" \"\${LEASES4_AT${i}_HWADDR:-}\""
        i=$((i + 1))
    done
    ;;
lease4_release | lease4_expire | lease4_decline)
    unbind "${LEASE4_ADDRESS:-}" "${LEASE4_HWADDR:-}"
    ;;
leases6_committed)
    while [ "$i" -lt "${LEASES6_SIZE:-0}" ]; do
        eval "a=\"\${LEASES6_AT${i}_ADDRESS:-}\" l=\"\${LEASES6_AT${i}_PREFIX_LEN:-128}\" \
              t=\"\${LEASES6_AT${i}_TYPE:-IA_NA}\" d=\"\${LEASES6_AT${i}_DUID:-}\""
        [ -n "$a" ] && bind "$(v6 "$a" "$l" "$t")" "$d"
        i=$((i + 1))
    done
    ;;
lease6_release | lease6_expire | lease6_decline)
    [ -n "${LEASE6_ADDRESS:-}" ] &&
        unbind "$(v6 "$LEASE6_ADDRESS" "${LEASE6_PREFIX_LEN:-128}" "${LEASE6_TYPE:-IA_NA}")" "${LEASE6_DUID:-}"
    ;;
esac
exit "$status"
