#!/usr/bin/env bash
# System packages the operations tests use, from Debian's own archive:
#   promtool            (package prometheus)  checks /metrics output, configs, rules, rule tests
#   systemd-analyze     (package systemd)     verifies the unit files in deploy/systemd/
#   chromium            (package chromium)    the dashboard's browser test (tests/test_dashboard.py),
#                                             driven by playwright-core: no browser download
#   ip, tc              (package iproute2)    the fault suite's network namespaces, veth links
#                                             and token buckets (tests/faults/)
#   mkfs.ext4, chattr   (package e2fsprogs)   the fault suite's state disk (a loop filesystem)
#   mount, losetup      (package mount)       ... mounted on a loop device
#   postgres, initdb    (package postgresql)  the shared store and leader lease of several
#                                             coordinators (throwaway servers: hive.pgtemp)
# Idempotent and quick when everything is present; skips politely (exit 0) when not
# root or not on an apt system, and the tests that need a tool then skip, naming it.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v tc >/dev/null 2>&1 || need+=(iproute2)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || need+=(mount)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: no apt-get; install ${need[*]} yourself (tests needing them skip)" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: not root; run 'sudo apt-get install ${need[*]}' (tests needing them skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# --no-install-recommends: promtool is all we need, not a running Prometheus server
# (and headless Chromium needs none of its recommended desktop extras);
# policy-rc.d keeps the package's postinst from trying to start the daemon.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "install-system-deps: installed ${need[*]}"
