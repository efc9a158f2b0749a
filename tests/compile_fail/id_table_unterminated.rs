// misuse: register the driver with an id table that has no zero entry at its end
// rule: `Registration::new` takes an `IdTable`, which always ends with its zero entry
// expect: E0308|mismatched types

use crate::{bindings, driver::VirtioScsi, virtio};
use kernel::prelude::*;

static IDS: [bindings::virtio_device_id; 1] = [bindings::virtio_device_id {
    device: 8,
    vendor: 0xffff_ffff,
}];

fn _misuse() -> impl PinInit<virtio::Registration<VirtioScsi>, Error> {
    virtio::Registration::new(c"x", &IDS, &[])
}
