// misuse: forge the proof of a reset to reach `detach_unused` on a live queue
// rule: `Reset` has a private field: only `VqSet::reset`, which resets the device, makes one
// expect: E0451

use crate::virtio::{Reset, VqSet};

fn _misuse(set: &VqSet) -> Reset<'_> {
    Reset { set }
}
