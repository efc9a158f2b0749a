// misuse: set DRIVER_OK on a device whose virtqueues were never created
// rule: `device_ready` is a method of the `VqSet` that `find_vqs` returns: no queues, no DRIVER_OK
// expect: no method named `device_ready`

use crate::{driver::VirtioScsi, virtio};

fn _misuse(dev: &virtio::Device<VirtioScsi>) {
    dev.device_ready();
}
