// misuse: add the same host twice (the second add overwrote the private pointer, and its error path freed a live one)
// rule: `Host::add` consumes the host: an added host is an `AddedHost`, which has no `add`
// expect: E0382
use crate::{
    driver::{Ops, Shared},
    scsi::Host,
};
use kernel::{device, sync::Arc};

fn _misuse(h: Host<Ops>, a: Arc<Shared>, b: Arc<Shared>, dev: &device::Device) {
    let _first = h.add(a, dev);
    let _second = h.add(b, dev);
}
