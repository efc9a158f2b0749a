// SPDX-License-Identifier: GPL-2.0

//! virtio_scsi_rs: a driver for the virtio-scsi host adapter (virtio device
//! id 8), in Rust.
//!
//! Layers, bottom up: `bindings` (bindgen output and C shims); `dma`,
//! `virtio`, `scsi`, `irqlock` and `work` (sound abstractions: the only
//! `unsafe` code); `protocol` (the wire protocol in pure Rust, also built on
//! the host for `cargo test`); and `driver` (the driver, safe Rust, one file
//! per concept).

mod bindings;
mod dma;
mod driver;
mod irqlock;
// The protocol module is also the API of the host crate (protocol/host.rs),
// so its items are `pub` rather than `pub(crate)`.
#[allow(unreachable_pub)]
mod protocol;
mod scsi;
mod virtio;
mod work;

use kernel::{prelude::*, sync::SetOnce};

module! {
    type: VirtioScsiModule,
    name: "virtio_scsi_rs",
    authors: ["The virtio_scsi_rs developers"],
    description: "Virtio SCSI HBA driver in Rust",
    license: "GPL",
    alias: ["virtio:d00000008v*"],
    params: {
        poll_queues: u32 {
            default: 0,
            description: "Request virtqueues to run without interrupts, polled by blk-mq (at most all but one)",
        },
        tmf_timeout: u32 {
            default: 10,
            description: "Seconds a task management function waits for the device before error handling escalates",
        },
        eh_reset_timer: u32 {
            default: 0,
            description: "1: a command timeout restarts its timer, leaving recovery to the host (the C driver's policy); 0: it reaches the abort path",
        },
        event_buffers: u32 {
            default: 16,
            description: "Event buffers posted to the device (1-64)",
        },
        max_breaks: u32 {
            default: 3,
            description: "Broken-queue device resets allowed within 60 s before the device is failed",
        },
    },
}

/// Devices the driver binds: any virtio-scsi device (`virtio:d00000008v*`).
static ID_TABLE: virtio::IdTable<1> =
    virtio::IdTable::new([(bindings::VIRTIO_ID_SCSI, bindings::VIRTIO_DEV_ANY_ID)]);

/// Feature bits offered to the device; T10 PI only where the block layer
/// carries protection information.
#[cfg(CONFIG_BLK_DEV_INTEGRITY)]
static FEATURES: [u32; 3] = [
    bindings::VIRTIO_SCSI_F_HOTPLUG,
    bindings::VIRTIO_SCSI_F_CHANGE,
    bindings::VIRTIO_SCSI_F_T10_PI,
];
#[cfg(not(CONFIG_BLK_DEV_INTEGRITY))]
static FEATURES: [u32; 2] = [
    bindings::VIRTIO_SCSI_F_HOTPLUG,
    bindings::VIRTIO_SCSI_F_CHANGE,
];

/// The SCSI host template, made once at module load (it names the module).
static HOST_TEMPLATE: SetOnce<scsi::Template<driver::Ops>> = SetOnce::new();

#[pin_data]
struct VirtioScsiModule {
    #[pin]
    driver: virtio::Registration<driver::VirtioScsi>,
}

impl kernel::InPlaceModule for VirtioScsiModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        HOST_TEMPLATE.populate(scsi::Template::new(
            module,
            c"Virtio SCSI HBA (Rust)",
            c"virtio_scsi_rs",
        ));
        try_pin_init!(Self {
            driver <- virtio::Registration::new(c"virtio_scsi_rs", &ID_TABLE, &FEATURES),
        })
    }
}

// Compile-fail checks (tools/compile-fail.sh): a snippet compiled as a module
// of this crate; Kbuild sets the cfg only when VSRS_COMPILE_FAIL names one.
#[cfg(vsrs_compile_fail)]
mod compile_fail {
    include!(env!("VSRS_COMPILE_FAIL"));
}
