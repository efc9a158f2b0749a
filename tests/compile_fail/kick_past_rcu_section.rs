// misuse: keep a kick past the RCU read-side section it was prepared in and notify after the queue may have been deleted
// rule: `Kick<'r>` borrows the `rcu::Guard` of its section, so it cannot outlive it; the queue set's drop waits for a grace period before deleting its queues
// expect: E0505

use crate::{driver::Ops, scsi::Command, virtio::Virtqueue};
use kernel::sync::rcu;

fn _misuse(mut vq: Virtqueue<Command<Ops>>) {
    let rcu = rcu::read_lock();
    let kick = vq.kick_prepare(&rcu);
    drop(rcu);
    if let Some(k) = kick {
        k.notify();
    }
}
