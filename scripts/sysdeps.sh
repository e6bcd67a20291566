#!/usr/bin/env bash
# Installs the optional system packages the test suite uses, when it can:
#   postgresql-15 (a second major version, for real cross-version tests) and chromium
#   (to render the HTML report in a real browser), HypoPG for PostgreSQL 15 (hypothetical
#   indexes, for --verify-fixes).  Needs root and apt-get; without
#   them it says what is missing and the tests that need it are skipped with that reason.
set -u
need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql-15 postgresql-contrib-15)
[ -x /usr/bin/chromium ] || need+=(chromium)
# HypoPG for PostgreSQL 15 (hypothetical indexes: --verify-fixes plans with them, locking nothing)
if [ -d /usr/share/postgresql/15/extension ] || [[ " ${need[*]} " == *" postgresql-15 "* ]]; then
  ls /usr/share/postgresql/15/extension/hypopg.control >/dev/null 2>&1 || need+=(postgresql-15-hypopg)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "sysdeps: not root or no apt-get; missing: ${need[*]} (tests needing them are skipped)" >&2
  exit 0
fi
echo "sysdeps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "sysdeps: could not install ${need[*]} (tests needing them are skipped)" >&2
# Debian's postgresql package starts a cluster of its own; planguard does not need it.
if command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | while read -r v c; do
    pg_ctlcluster "$v" "$c" stop >/dev/null 2>&1 || true
  done
fi
exit 0
