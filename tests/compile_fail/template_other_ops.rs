// misuse: allocate a host driven by one operations type from the template of another
// rule: `Template<T>` is typed by its operations, and `Host::<T>::alloc` takes only a `Template<T>`
// expect: E0308|mismatched types

use crate::{
    driver::Ops,
    scsi::{Host, HostParams, Template},
};

struct OtherOps;

fn _misuse(t: &'static Template<OtherOps>, p: &HostParams) {
    let _ = Host::<Ops>::alloc(t, p);
}
