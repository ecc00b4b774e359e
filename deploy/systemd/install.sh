#!/usr/bin/env bash
# Install Hive mesh as systemd services on this host.
#
#   sudo deploy/systemd/install.sh coordinator   # the coordinator (+ gateway) host
#   sudo deploy/systemd/install.sh agent         # every GPU host
#   sudo deploy/systemd/install.sh all           # a single-host cluster
#
# Installs the package the README installs (pip install .) into /opt/hive, the `hive`
# user (groups video, render for the GPUs), the units and hive-distributed.target,
# and example configs in /etc/hive/ (never overwriting existing ones); then enables
# the role's units. Edit /etc/hive/* and `systemctl start hive-distributed.target`.
set -euo pipefail
role=${1:-}
case "$role" in
  coordinator) units=(hive-coordinator.service hive-gateway.service) ;;
  agent) units=(hive-node-agent.service) ;;
  all) units=(hive-coordinator.service hive-gateway.service hive-node-agent.service) ;;
  *) echo "usage: $0 coordinator|agent|all" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "$0: run as root (sudo)" >&2
  exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
prefix=${HIVE_PREFIX:-/opt/hive}

python3 -m venv "$prefix"
"$prefix/bin/pip" install --quiet --upgrade pip
"$prefix/bin/pip" install --quiet "$repo"
install -D -m 0644 "$repo/docs/operations.md" "$prefix/share/docs/operations.md"

install -D -m 0644 "$here/hive.sysusers.conf" /usr/lib/sysusers.d/hive.conf
systemd-sysusers /usr/lib/sysusers.d/hive.conf

install -d -m 0755 /etc/hive
for f in cluster.yaml node.yaml gateway.env; do
  if [ ! -e "/etc/hive/$f" ]; then
    install -m 0640 -g hive "$repo/deploy/config/$f" "/etc/hive/$f"
  fi
done
# The files' JSON Schemas, which their yaml-language-server lines name: always the
# installed version's (an editor on the host completes and checks the files with them).
for f in cluster.schema.json node.schema.json; do
  install -m 0644 "$repo/deploy/config/$f" "/etc/hive/$f"
done

for unit in hive-coordinator.service hive-node-agent.service hive-gateway.service \
  hive-distributed.target; do
  install -m 0644 "$here/$unit" "/etc/systemd/system/$unit"
done
systemctl daemon-reload
systemctl enable "${units[@]}" hive-distributed.target
echo "installed. Edit /etc/hive/, then: systemctl start hive-distributed.target"
echo "logs: journalctl -u 'hive-*' -f      check: $prefix/bin/hive check"
