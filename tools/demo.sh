#!/usr/bin/env bash
# `make demo`: runs playbooks/demo.yml on localhost with this checkout as the collection
# walrus.postgres (through a symlinked collections tree outside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=/var/tmp/walrus-demo-collections
mkdir -p "$tree/ansible_collections/walrus"
ln -sfn "$root" "$tree/ansible_collections/walrus/postgres"
export ANSIBLE_COLLECTIONS_PATH=$tree ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false ANSIBLE_NOCOLOR=${ANSIBLE_NOCOLOR:-1}
export ANSIBLE_RETRY_FILES_ENABLED=false ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false
export ANSIBLE_CALLBACK_RESULT_FORMAT=yaml
exec "$root/.venv/bin/ansible-playbook" -i localhost, -c local \
  -e ansible_python_interpreter="$root/.venv/bin/python" -e ansible_become_method=su \
  playbooks/demo.yml "$@"
