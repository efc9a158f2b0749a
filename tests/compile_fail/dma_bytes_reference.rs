// misuse: hold a reference into bytes the device may write (a data race the compiler assumes away)
// rule: `DmaBytes` gives out no reference to its contents: only volatile copies (`read_head`, `read_at`, `write_at`)
// expect: E0608

use crate::dma::DmaBytes;

fn _misuse(b: &DmaBytes<16>) -> u8 {
    b[0]
}
