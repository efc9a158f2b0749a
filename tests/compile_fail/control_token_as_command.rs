// misuse: take a used buffer off the control queue and treat its token as a SCSI command
// rule: `Virtqueue<Tok>` hands back only `Tok` values: a control queue's tokens are slots, never commands
// expect: E0308|mismatched types

use crate::{
    driver::Ops,
    scsi::Command,
    virtio::{Slot, Virtqueue},
};

fn _misuse(vq: &mut Virtqueue<Slot>) {
    let _taken: Option<(Command<Ops>, u32)> = vq.get_buf();
}
