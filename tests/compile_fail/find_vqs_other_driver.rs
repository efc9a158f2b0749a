// misuse: create a device's virtqueues with the callback of another driver type, which then reads `priv` as that type
// rule: `find_vqs` has no type parameter: the callback is the one of `Device<T>`'s own driver, and only the registration of `T` makes a `Device<T>`
// expect: E0107

use crate::{driver::VirtioScsi, virtio};

struct Other;

fn _misuse(dev: &virtio::Device<VirtioScsi>) {
    let _ = dev.find_vqs::<Other>(&[], 0);
}
