#!/usr/bin/env bash
# Owns making sure the Debian packages behind the integration test world are installed (slapd, Dovecot, openssl, HAProxy).
# Must not leave the distro's own slapd/dovecot/haproxy services running: the tests start their own instances.
set -euo pipefail

PACKAGES=(slapd ldap-utils dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-submissiond openssl haproxy redis-server)
# issue 14 (proto): ManageSieve backend (Pigeonhole) and a real ManageSieve client for its tests.
PACKAGES+=(dovecot-managesieved dovecot-sieve sieve-connect)
# deploy/ checks: promtool (alert rules) and systemd-analyze (the unit); prometheus' own server is not wanted running.
PACKAGES+=(prometheus systemd)
# the unit's seccomp sandbox test (deploy-unit-sandbox) loads the filters with python3 ctypes + libseccomp2 (systemd's).
PACKAGES+=(python3)
# file -> package that provides it
declare -A NEEDS=(
  [/usr/sbin/slapd]=slapd
  [/usr/sbin/slapadd]=slapd
  [/usr/bin/ldapsearch]=ldap-utils
  [/usr/sbin/dovecot]=dovecot-core
  [/usr/lib/dovecot/imap]=dovecot-imapd
  [/usr/lib/dovecot/pop3]=dovecot-pop3d
  [/usr/lib/dovecot/lmtp]=dovecot-lmtpd
  [/usr/lib/dovecot/submission]=dovecot-submissiond
  [/usr/bin/openssl]=openssl
  [/usr/sbin/haproxy]=haproxy
  [/usr/bin/redis-server]=redis-server
  [/usr/bin/redis-cli]=redis-tools
  [/usr/bin/promtool]=prometheus
  [/usr/bin/systemd-analyze]=systemd
  [/usr/bin/python3]=python3
)
NEEDS[/usr/lib/dovecot/managesieve]=dovecot-managesieved
NEEDS[/usr/lib/dovecot/modules/lib90_sieve_plugin.so]=dovecot-sieve
NEEDS[/usr/bin/sieve-connect]=sieve-connect

# --check: only report (exit 1 naming what is missing), never install or touch services.
check_only=0
if [[ "${1:-}" == "--check" ]]; then check_only=1; fi

missing=()
for f in "${!NEEDS[@]}"; do
  # Programs must be executable; shared objects (the Sieve plugin) are plain files (mode 644).
  if [[ "$f" == *.so ]]; then
    [[ -f "$f" ]] || missing+=("$f (${NEEDS[$f]})")
  else
    [[ -x "$f" ]] || missing+=("$f (${NEEDS[$f]})")
  fi
done

stop_distro_services() {
  # The packages' own daemons would hold the standard ports and are not used by the tests.
  for svc in slapd dovecot haproxy redis-server prometheus; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
      systemctl disable "$svc" >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1 && service "$svc" status >/dev/null 2>&1; then
      service "$svc" stop || true
    fi
    if command -v update-rc.d >/dev/null 2>&1 && [[ -e "/etc/init.d/$svc" ]]; then
      update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  done
}

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "ensure-packages: all integration test packages present"
  if [[ $check_only -eq 1 ]]; then exit 0; fi
  stop_distro_services
  exit 0
fi

echo "ensure-packages: missing: ${missing[*]}"
if [[ $check_only -eq 1 ]]; then exit 1; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "ensure-packages: run as root, or install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${PACKAGES[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# policy-rc.d answering 101 stops apt's maintainer scripts from starting the services.
created_policy=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() { if [[ $created_policy -eq 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

apt-get update -q
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
stop_distro_services
echo "ensure-packages: installed ${PACKAGES[*]}"
