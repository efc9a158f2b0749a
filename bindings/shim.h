/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C shims: static inline functions and macros of the virtio API that Rust
 * cannot call directly. Each is a one-line forward; no logic lives here.
 */
#ifndef VSRS_SHIM_H
#define VSRS_SHIM_H

#include <linux/types.h>
#include <linux/spinlock_types.h>

struct virtio_device;
struct virtio_driver;
struct virtqueue;
struct virtqueue_info;
struct irq_affinity;
struct scsi_cmnd;
struct request;
struct blk_integrity;
struct device;
struct module;


int vsrs_register_virtio_driver(struct virtio_driver *drv);
u16 vsrs_virtio_cread16(struct virtio_device *vdev, unsigned int offset);
u32 vsrs_virtio_cread32(struct virtio_device *vdev, unsigned int offset);
void vsrs_virtio_cwrite32(struct virtio_device *vdev, unsigned int offset, u32 val);
bool vsrs_virtio_has_feature(const struct virtio_device *vdev, unsigned int fbit);
int vsrs_virtio_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
			 struct virtqueue *vqs[], struct virtqueue_info vqs_info[],
			 struct irq_affinity *desc);
void vsrs_virtio_del_vqs(struct virtio_device *vdev);
void vsrs_virtio_device_ready(struct virtio_device *vdev);
void vsrs_virtio_synchronize_cbs(struct virtio_device *vdev);

unsigned long vsrs_spin_lock_irqsave(spinlock_t *lock);
bool vsrs_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags);
void vsrs_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);

struct blk_integrity *vsrs_rq_integrity(struct request *rq);
bool vsrs_module_is_live(struct module *mod);

#endif
