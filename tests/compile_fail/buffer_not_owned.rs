// misuse: give the device a buffer that the token does not own (freed while the device may still write it)
// rule: `Virtqueue::add` builds the list with a closure over `&'b Tok` only (higher-ranked): a borrow of anything else cannot last for every `'b`
// expect: E0597

use crate::{dma::DmaBytes, driver::Ops, scsi::Command, virtio::Virtqueue};
use kernel::prelude::*;

fn _misuse(vq: &mut Virtqueue<Command<Ops>>, cmd: Command<Ops>) -> Result {
    let local: KBox<DmaBytes<16>> = KBox::init(pin_init::zeroed::<DmaBytes<16>>(), GFP_KERNEL)?;
    let _ = vq.add(cmd, |_c, s| s.writable(&local));
    Ok(())
}
