// misuse: let go of a control or event queue whose buffers the device still holds (their memory was then reused)
// rule: `SlotQueue::detach` needs the `Reset` proof; without one a dropped queue never frees a busy slot
// expect: E0061

use crate::virtio::SlotQueue;

fn _misuse(q: SlotQueue) {
    let _ = q.detach();
}
