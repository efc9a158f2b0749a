// misuse: keep a kick past the queue's lock and notify after a reset may have deleted the queue
// rule: `Kick<'a>` borrows the virtqueue mutably, so it cannot outlive the borrow (nor the lock guard it comes from)
// expect: E0505

use crate::{driver::Ops, scsi::Command, virtio::Virtqueue};

fn _misuse(mut vq: Virtqueue<Command<Ops>>) {
    let kick = vq.kick_prepare();
    drop(vq);
    if let Some(k) = kick {
        k.notify();
    }
}
