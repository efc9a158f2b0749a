/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C API virtio_scsi_rs binds to. The module's Kbuild runs bindgen on this
 * header with the module's own C flags; what the kernel crate's bindings
 * already declare (struct device, struct request, ...) is taken from there
 * (see bindgen_parameters), so the two sets of types are one.
 */
#include <linux/cache.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <uapi/linux/virtio_ring.h>
#include <linux/interrupt.h>
#include <linux/blk-mq.h>
#include <uapi/linux/virtio_scsi.h>
#include <scsi/scsi_host.h>
#include <scsi/scsi_cmnd.h>
#include <scsi/scsi_device.h>
#include <scsi/scsi_eh.h>
#include <scsi/scsi_tcq.h>
#include <scsi/scsi_devinfo.h>

#include "shim.h"

/* Macros with casts, which bindgen cannot evaluate, as constants it can. */
const blist_flags_t VSRS_BLIST_TRY_VPD_PAGES = BLIST_TRY_VPD_PAGES;
/* The architecture's, for a build-time check (virtio.rs, Line). */
const size_t VSRS_ARCH_DMA_MINALIGN = ARCH_DMA_MINALIGN;
const size_t VSRS_L1_CACHE_BYTES = L1_CACHE_BYTES;
