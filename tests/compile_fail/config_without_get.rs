// misuse: read the configuration space of a transport that has no `get` operation (a NULL call)
// rule: reads go through `ConfigSpace`, which `Device::config` makes only when `get` exists; `Device` has no raw read
// expect: no method named `read_u32`

use crate::{driver::VirtioScsi, virtio};

fn _misuse(dev: &virtio::Device<VirtioScsi>) {
    let _ = dev.read_u32(0);
}
