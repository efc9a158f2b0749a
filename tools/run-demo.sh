#!/bin/bash
# make run: boot a guest with the default virtio-scsi disks, load
# virtio_scsi_rs, show what it bound and the disks, write and read back data.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/run-guest" -- bash "$here/demo-guest.sh"
