// SPDX-License-Identifier: GPL-2.0
/* C shims for virtio_scsi_rs: see shim.h. */
#include <linux/module.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/spinlock.h>
#include <linux/blk-mq.h>
#include <linux/blk-integrity.h>
#include <scsi/scsi_cmnd.h>

#include "shim.h"

/* THIS_MODULE here is the composite module's, which owns the driver. */
int vsrs_register_virtio_driver(struct virtio_driver *drv)
{
	return register_virtio_driver(drv);
}

u16 vsrs_virtio_cread16(struct virtio_device *vdev, unsigned int offset)
{
	return virtio_cread16(vdev, offset);
}

u32 vsrs_virtio_cread32(struct virtio_device *vdev, unsigned int offset)
{
	return virtio_cread32(vdev, offset);
}

void vsrs_virtio_cwrite32(struct virtio_device *vdev, unsigned int offset, u32 val)
{
	virtio_cwrite32(vdev, offset, val);
}

bool vsrs_virtio_has_feature(const struct virtio_device *vdev, unsigned int fbit)
{
	return virtio_has_feature(vdev, fbit);
}

int vsrs_virtio_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
			 struct virtqueue *vqs[], struct virtqueue_info vqs_info[],
			 struct irq_affinity *desc)
{
	return virtio_find_vqs(vdev, nvqs, vqs, vqs_info, desc);
}

void vsrs_virtio_del_vqs(struct virtio_device *vdev)
{
	vdev->config->del_vqs(vdev);
}

void vsrs_virtio_device_ready(struct virtio_device *vdev)
{
	virtio_device_ready(vdev);
}

void vsrs_virtio_synchronize_cbs(struct virtio_device *vdev)
{
	virtio_synchronize_cbs(vdev);
}

unsigned long vsrs_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

bool vsrs_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags)
{
	return spin_trylock_irqsave(lock, *flags);
}

void vsrs_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

/* The integrity profile of the request's disk, or NULL. */
struct blk_integrity *vsrs_rq_integrity(struct request *rq)
{
	return blk_get_integrity(rq->q->disk);
}

/* A built-in module (NULL) is always live. */
bool vsrs_module_is_live(struct module *mod)
{
	return !mod || module_is_live(mod);
}
