// misuse: complete a command (or give it to the device) and still tell the midlayer "busy" (a double completion)
// rule: `Command::complete` and `Command::busy` both consume the command: only one of them can happen
// expect: E0382

use crate::{
    driver::Ops,
    scsi::{Busy, Command},
};

fn _misuse(cmd: Command<Ops>) -> Result<(), Busy<Ops>> {
    cmd.complete(0, 0, &[]);
    Err(cmd.busy())
}
