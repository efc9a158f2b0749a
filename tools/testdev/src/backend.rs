// SPDX-License-Identifier: GPL-2.0
//! vhost-user glue: pops descriptor chains off the vrings, hands their bytes
//! to the Device, writes completions back, keeps event buffers and held
//! requests for later. A KICK eventfd (control socket, hold timers) makes
//! the worker thread deliver events and complete held requests.

use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackendMut, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::device::{Device, Held, EVENT_SIZE};
use crate::vring::Vring;

pub const CTRL_QUEUE: u16 = 0;
pub const EVENT_QUEUE: u16 = 1;
/// Largest readable part of a chain the device accepts (header, data-out).
const MAX_READ: usize = 64 << 20;

const VIRTIO_SCSI_F_HOTPLUG: u32 = 1;
const VIRTIO_SCSI_F_CHANGE: u32 = 2;
const VIRTIO_SCSI_F_T10_PI: u32 = 3;

fn err<E: std::fmt::Debug>(e: E) -> io::Error {
    io::Error::new(ErrorKind::Other, format!("{e:?}"))
}

pub struct Backend {
    pub dev: Device,
    pub req_queues: usize,
    pub event_idx_offered: bool,
    mem: Option<GuestMemoryAtomic<GuestMemoryMmap>>,
    event_idx: bool,
    pub exit_event: EventFd,
    /// Written by the control thread and hold timers.
    pub kick: EventFd,
    /// Posted event buffers: (head, writable segments).
    ev_bufs: Vec<(u16, Vec<(u64, u32)>)>,
    /// next_avail of each queue after our last pop: a queue reset shows as
    /// a different value (the driver reset the device; what we hold is gone).
    seen_avail: Vec<u16>,
    pub verbose: bool,
}

impl Backend {
    pub fn new(dev: Device, req_queues: usize) -> io::Result<Self> {
        Ok(Backend {
            dev,
            req_queues,
            event_idx_offered: true,
            mem: None,
            event_idx: false,
            exit_event: EventFd::new(EFD_NONBLOCK)?,
            kick: EventFd::new(EFD_NONBLOCK)?,
            ev_bufs: Vec::new(),
            seen_avail: vec![0; 2 + req_queues],
            verbose: false,
        })
    }

    /// The custom epoll event id of the kick eventfd.
    pub fn kick_id(&self) -> u64 {
        self.num_queues() as u64 + 1
    }

    /// Forgets what was held on queue `q` when the driver reset it.
    fn check_reset(&mut self, q: usize, vring: &Vring) {
        let now = vring.get_ref().get_queue().next_avail();
        if now != self.seen_avail[q] {
            if self.verbose {
                eprintln!(
                    "testdev: queue {q} was reset (next_avail {} -> {now})",
                    self.seen_avail[q]
                );
            }
            self.seen_avail[q] = now;
            if q == EVENT_QUEUE as usize {
                self.ev_bufs.clear();
            }
            self.dev.held.retain(|h| h.queue as usize != q);
        }
    }

    /// Pops the available chains of a queue: (head, readable bytes, writable segments).
    fn pop(&mut self, q: usize, vring: &Vring) -> io::Result<Vec<(u16, Vec<u8>, Vec<(u64, u32)>)>> {
        let mut out = Vec::new();
        let Some(mem) = self.mem.as_ref().map(|m| m.memory()) else {
            return Ok(out);
        };
        let mut state = vring.get_mut();
        let queue = state.get_queue_mut();
        if !queue.ready() {
            return Ok(out);
        }
        for dc in queue.iter(mem.clone()).map_err(err)? {
            let head = dc.head_index();
            let mut rd = Vec::new();
            let mut segs = Vec::new();
            for d in dc.clone() {
                if d.is_write_only() {
                    segs.push((d.addr().0, d.len()));
                } else if rd.len() + (d.len() as usize) <= MAX_READ {
                    let at = rd.len();
                    rd.resize(at + d.len() as usize, 0);
                    if mem.read_slice(&mut rd[at..], d.addr()).is_err() {
                        rd.truncate(at);
                    }
                }
            }
            out.push((head, rd, segs));
        }
        self.seen_avail[q] = queue.next_avail();
        Ok(out)
    }

    fn write_back(&self, segs: &[(u64, u32)], bytes: &[u8]) {
        let Some(m) = self.mem.as_ref() else { return };
        let mem = m.memory();
        let mut off = 0;
        for &(addr, len) in segs {
            if off >= bytes.len() {
                break;
            }
            let n = (len as usize).min(bytes.len() - off);
            if let Err(e) = mem.write_slice(&bytes[off..off + n], GuestAddress(addr)) {
                eprintln!("testdev: writing guest memory at {addr:#x}: {e}");
            }
            off += n;
        }
    }

    fn complete(&self, vring: &Vring, head: u16, segs: &[(u64, u32)], bytes: &[u8], used_len: u32) {
        self.write_back(segs, bytes);
        if let Err(e) = vring.add_used(head, used_len) {
            eprintln!("testdev: add_used: {e:?}");
        }
    }

    fn signal(&self, vring: &Vring) {
        let _ = vring.signal_used_queue();
    }

    /// Spawns a timer that kicks the worker after `d`.
    fn timer(&self, d: Duration) {
        if let Ok(k) = self.kick.try_clone() {
            std::thread::spawn(move || {
                std::thread::sleep(d);
                let _ = k.write(1);
            });
        }
    }

    fn process_queue(&mut self, q: usize, vrings: &[Vring]) -> io::Result<()> {
        let vring = &vrings[q];
        self.check_reset(q, vring);
        let chains = self.pop(q, vring)?;
        if self.verbose && !chains.is_empty() {
            eprintln!("testdev: queue {q}: {} new requests", chains.len());
        }
        let mut any = false;
        for (head, rd, segs) in chains {
            let cap: usize = segs.iter().map(|s| s.1 as usize).sum();
            if q == EVENT_QUEUE as usize {
                self.ev_bufs.push((head, segs));
                continue;
            }
            let (o, ended) = if q == CTRL_QUEUE as usize {
                self.dev.handle_ctrl(&rd, cap)
            } else {
                (self.dev.handle_cmd(&rd, cap), Vec::new())
            };
            for h in ended {
                self.finish_held(h, vrings);
            }
            if o.hold.is_some() {
                if let Some(d) = self
                    .dev
                    .hold(o, q as u16, head, segs, q == CTRL_QUEUE as usize)
                {
                    self.timer(d);
                }
                continue;
            }
            self.complete(vring, head, &segs, &o.bytes, o.used_len);
            if o.stray {
                let _ = vring.add_used(head, o.used_len);
            }
            // A completion without notification: the driver sees it with
            // the next one that notifies (or never, and times it out).
            any |= !o.quiet;
        }
        if any {
            self.signal(vring);
        }
        if q == EVENT_QUEUE as usize {
            self.dev.event_bufs = self.ev_bufs.len();
        }
        // Events a request's fuzz lie queued go out now.
        if q == EVENT_QUEUE as usize || !self.dev.pending_events.is_empty() {
            self.deliver_events(vrings);
        }
        Ok(())
    }

    fn finish_held(&self, h: Held, vrings: &[Vring]) {
        let Some(vring) = vrings.get(h.queue as usize) else {
            return;
        };
        if !vring.get_ref().get_queue().ready() {
            return;
        }
        self.complete(vring, h.head, &h.segs, &h.bytes, h.used_len);
        self.signal(vring);
    }

    fn deliver_events(&mut self, vrings: &[Vring]) {
        let vring = &vrings[EVENT_QUEUE as usize];
        self.check_reset(EVENT_QUEUE as usize, vring);
        let ready = vring.get_ref().get_queue().ready();
        let mut any = false;
        while ready && !self.ev_bufs.is_empty() {
            let Some(e) = self.dev.next_event() else {
                break;
            };
            let (head, segs) = self.ev_bufs.remove(0);
            self.complete(vring, head, &segs, &e, EVENT_SIZE as u32);
            any = true;
        }
        if ready && self.ev_bufs.is_empty() {
            self.dev.drop_undeliverable();
        }
        self.dev.event_bufs = self.ev_bufs.len();
        if any {
            self.signal(vring);
        }
    }

    fn on_kick(&mut self, vrings: &[Vring]) {
        let _ = self.kick.read();
        let _ = self.process_queue(EVENT_QUEUE as usize, vrings);
        // Holds the driver's reset made void go first: take_due hands over
        // the due ones, which a reset found later would not drop (and they
        // would complete into the new ring).
        for (q, vring) in vrings.iter().enumerate() {
            self.check_reset(q, vring);
        }
        for h in self.dev.take_due(Instant::now(), false) {
            if h.queue as usize == EVENT_QUEUE as usize {
                continue;
            }
            self.finish_held(h, vrings);
        }
        self.deliver_events(vrings);
    }
}

impl VhostUserBackendMut<Vring, ()> for Backend {
    fn num_queues(&self) -> usize {
        2 + self.req_queues
    }

    fn max_queue_size(&self) -> usize {
        1024
    }

    fn features(&self) -> u64 {
        let mut f = 1 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_RING_F_INDIRECT_DESC
            | 1 << VIRTIO_SCSI_F_HOTPLUG
            | 1 << VIRTIO_SCSI_F_CHANGE
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        if self.event_idx_offered {
            f |= 1 << VIRTIO_RING_F_EVENT_IDX;
        }
        if self.dev.t10_pi {
            f |= 1 << VIRTIO_SCSI_F_T10_PI;
        }
        f
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
    }

    fn acked_features(&mut self, features: u64) {
        self.dev.acked_features = features;
        if self.verbose {
            eprintln!("testdev: driver features {features:#x}");
        }
    }

    fn set_event_idx(&mut self, enabled: bool) {
        self.event_idx = enabled;
    }

    fn update_memory(&mut self, mem: GuestMemoryAtomic<GuestMemoryMmap>) -> io::Result<()> {
        self.mem = Some(mem);
        Ok(())
    }

    fn handle_event(
        &mut self,
        ev: u16,
        evset: EventSet,
        vrings: &[Vring],
        _thread: usize,
    ) -> io::Result<bool> {
        if evset != EventSet::IN {
            return Ok(false);
        }
        if ev as u64 == self.kick_id() {
            self.on_kick(vrings);
            return Ok(false);
        }
        let q = ev as usize;
        if q >= vrings.len() {
            return Ok(false);
        }
        if self.event_idx {
            loop {
                vrings[q].disable_notification().map_err(err)?;
                self.process_queue(q, vrings)?;
                if !vrings[q].enable_notification().map_err(err)? {
                    break;
                }
            }
        } else {
            self.process_queue(q, vrings)?;
        }
        Ok(false)
    }

    fn exit_event(&self, _thread_index: usize) -> Option<EventFd> {
        self.exit_event.try_clone().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{lun_bytes, CMD_RESP_SIZE};
    use crate::scsi::Lun;
    use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::{mock::MockSplitQueue, Descriptor};
    use vm_memory::Address;

    /// A backend with one 1 MiB disk at 0:0 and three vrings; queue 2 holds
    /// one chain: the request (51 bytes) and writable buffers of `wlens`.
    fn setup(
        cdb: &[u8],
        wlens: &[u32],
    ) -> (Backend, Vec<Vring>, GuestMemoryAtomic<GuestMemoryMmap>, u64) {
        let mem = GuestMemoryAtomic::new(
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap(),
        );
        let mut req = lun_bytes(0, 0).to_vec();
        req.extend_from_slice(&7u64.to_le_bytes());
        req.extend_from_slice(&[0; 3]);
        let mut c = [0u8; 32];
        c[..cdb.len()].copy_from_slice(cdb);
        req.extend_from_slice(&c);
        mem.memory()
            .write_slice(&req, GuestAddress(0x10_0000))
            .unwrap();
        let mut v = vec![Descriptor::new(0x10_0000, req.len() as u32, 0, 0)];
        for (i, &l) in wlens.iter().enumerate() {
            v.push(Descriptor::new(
                0x20_0000 + i as u64 * 0x1_0000,
                l,
                VRING_DESC_F_WRITE as u16,
                0,
            ));
        }
        let m = mem.memory();
        let queue = MockSplitQueue::new(&*m, 16);
        queue.build_desc_chain(&v).unwrap();
        m.write_obj(0u16, queue.avail_addr().unchecked_add(4))
            .unwrap();
        m.write_obj(1u16, queue.avail_addr().unchecked_add(2))
            .unwrap();
        let vrings: Vec<Vring> = (0..3)
            .map(|_| Vring::new(mem.clone(), 16).unwrap())
            .collect();
        vrings[2].set_queue_size(16);
        vrings[2]
            .set_queue_info(
                queue.desc_table_addr().0,
                queue.avail_addr().0,
                queue.used_addr().0,
            )
            .unwrap();
        vrings[2].set_queue_ready(true);
        let mut dev = Device::new();
        let mut lun = Lun::ram_disk(1 << 20, "x");
        lun.execute(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0x5a; 512]);
        dev.luns.insert((0, 0), lun);
        let mut b = Backend::new(dev, 1).unwrap();
        b.update_memory(mem.clone()).unwrap();
        let used = queue.used_addr().0;
        (b, vrings, mem, used)
    }

    fn used_entry(mem: &GuestMemoryAtomic<GuestMemoryMmap>, used: u64, i: u64) -> (u16, u32) {
        let m = mem.memory();
        let idx: u16 = m.read_obj(GuestAddress(used + 2)).unwrap();
        assert!(u64::from(idx) > i, "used idx {idx}");
        let id: u32 = m.read_obj(GuestAddress(used + 4 + 8 * i)).unwrap();
        let len: u32 = m.read_obj(GuestAddress(used + 8 + 8 * i)).unwrap();
        (id as u16, len)
    }

    #[test]
    fn read_through_the_vring_split_buffers() {
        // Response header in one buffer, data-in split over two.
        let (mut b, vrings, mem, used) =
            setup(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[108, 200, 400]);
        b.process_queue(2, &vrings).unwrap();
        assert_eq!(used_entry(&mem, used, 0), (0, CMD_RESP_SIZE as u32 + 512));
        let m = mem.memory();
        let mut r = [0u8; 12];
        m.read_slice(&mut r, GuestAddress(0x20_0000)).unwrap();
        assert_eq!(
            (
                u32::from_le_bytes(r[4..8].try_into().unwrap()),
                r[10],
                r[11]
            ),
            (88, 0, 0)
        );
        let mut d = vec![0u8; 400];
        m.read_slice(&mut d[..200], GuestAddress(0x21_0000))
            .unwrap();
        m.read_slice(&mut d[200..], GuestAddress(0x22_0000))
            .unwrap();
        assert!(d[..312].iter().all(|&x| x == 0x5a));
    }

    #[test]
    fn used_len_fault_and_stray_through_the_vring() {
        let (mut b, vrings, mem, used) = setup(&[0x00], &[108]);
        b.dev
            .control(&serde_json::json!({"cmd":"fault","fault":"used_len","extra":1000}));
        b.dev
            .control(&serde_json::json!({"cmd":"fault","fault":"stray"}));
        b.process_queue(2, &vrings).unwrap();
        assert_eq!(used_entry(&mem, used, 0), (0, 1108));
        assert_eq!(
            used_entry(&mem, used, 1),
            (0, 1108),
            "the same head completed twice"
        );
    }

    #[test]
    fn held_request_completes_on_kick_after_release() {
        let (mut b, vrings, mem, used) = setup(&[0x00], &[108]);
        b.dev
            .control(&serde_json::json!({"cmd":"fault","fault":"hold"}));
        b.process_queue(2, &vrings).unwrap();
        let idx: u16 = mem.memory().read_obj(GuestAddress(used + 2)).unwrap();
        assert_eq!(idx, 0, "held");
        assert_eq!(b.dev.held.len(), 1);
        b.dev.control(&serde_json::json!({"cmd":"release"}));
        b.on_kick(&vrings);
        assert_eq!(used_entry(&mem, used, 0), (0, 108));
    }

    #[test]
    fn held_request_due_after_a_reset_is_dropped() {
        let (mut b, vrings, mem, used) = setup(&[0x00], &[108]);
        b.dev
            .control(&serde_json::json!({"cmd":"fault","fault":"hold","ms":0}));
        b.process_queue(2, &vrings).unwrap();
        assert_eq!(b.dev.held.len(), 1);
        // The driver resets the device: the queue starts over.
        vrings[2].set_queue_next_avail(0);
        b.on_kick(&vrings);
        assert!(b.dev.held.is_empty());
        let idx: u16 = mem.memory().read_obj(GuestAddress(used + 2)).unwrap();
        assert_eq!(idx, 0, "completed into the new ring");
    }
}
