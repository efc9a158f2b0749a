// misuse: error handling reads the driver's per-command data (the response the device may be writing right now)
// rule: `EhCommand` exposes only fields that never change; the per-command data is reachable only from an owned `Command`
// expect: no method named `private`

use crate::scsi::EhCommand;

fn _misuse(cmd: &EhCommand<'_>) {
    let _ = cmd.private();
}
