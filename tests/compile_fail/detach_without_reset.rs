// misuse: take back buffers of a live queue as if unused (only valid after the device was reset)
// rule: `Virtqueue::detach_unused` needs a `Reset` proof, made only by `VqSet::reset`
// expect: E0061

use crate::{driver::Ops, scsi::Command, virtio::Virtqueue};

fn _misuse(vq: &mut Virtqueue<Command<Ops>>) {
    let _ = vq.detach_unused();
}
