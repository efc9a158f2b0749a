// SPDX-License-Identifier: GPL-2.0
//! SCSI emulation of one logical unit: a disk (RAM or file backed) or a CD
//! with a removable medium. Enough of SPC/SBC/MMC for Linux's sd and sr.

use std::fs::File;
use std::os::unix::fs::FileExt;

pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;

pub const NOT_READY: u8 = 0x02;
pub const MEDIUM_ERROR: u8 = 0x03;
pub const ILLEGAL_REQUEST: u8 = 0x05;
pub const UNIT_ATTENTION: u8 = 0x06;

/// Fixed-format sense data (18 bytes).
pub fn sense(key: u8, asc: u8, ascq: u8) -> Vec<u8> {
    let mut s = vec![0u8; 18];
    s[0] = 0x70;
    s[2] = key;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Disk,
    Cd,
}

pub enum Store {
    Ram(Vec<u8>),
    File(File, u64),
}

impl Store {
    fn len(&self) -> u64 {
        match self {
            Store::Ram(v) => v.len() as u64,
            Store::File(_, n) => *n,
        }
    }
    fn read(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        match self {
            Store::Ram(v) => {
                buf.copy_from_slice(&v[off as usize..off as usize + buf.len()]);
                Ok(())
            }
            Store::File(f, _) => f.read_exact_at(buf, off),
        }
    }
    fn write(&mut self, off: u64, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Store::Ram(v) => {
                v[off as usize..off as usize + buf.len()].copy_from_slice(buf);
                Ok(())
            }
            Store::File(f, _) => f.write_all_at(buf, off),
        }
    }
    fn sync(&self) -> std::io::Result<()> {
        match self {
            Store::Ram(_) => Ok(()),
            Store::File(f, _) => f.sync_data(),
        }
    }
}

/// Result of one command at the SCSI level.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CmdResult {
    pub status: u8,
    pub sense: Vec<u8>,
    pub data_in: Vec<u8>,
    /// Bytes of the data-out buffer the command consumed.
    pub data_out_used: usize,
}

impl CmdResult {
    pub fn good() -> Self {
        CmdResult::default()
    }
    pub fn data(d: Vec<u8>) -> Self {
        CmdResult {
            data_in: d,
            ..Default::default()
        }
    }
    pub fn check(key: u8, asc: u8, ascq: u8) -> Self {
        CmdResult {
            status: CHECK_CONDITION,
            sense: sense(key, asc, ascq),
            ..Default::default()
        }
    }
    pub fn invalid_opcode() -> Self {
        Self::check(ILLEGAL_REQUEST, 0x20, 0x00)
    }
    pub fn invalid_field() -> Self {
        Self::check(ILLEGAL_REQUEST, 0x24, 0x00)
    }
    pub fn lba_out_of_range() -> Self {
        Self::check(ILLEGAL_REQUEST, 0x21, 0x00)
    }
}

fn be16(b: &[u8]) -> u64 {
    u16::from_be_bytes([b[0], b[1]]) as u64
}
fn be32(b: &[u8]) -> u64 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}
fn trunc(mut v: Vec<u8>, alloc: u64) -> Vec<u8> {
    v.truncate(alloc.min(v.len() as u64) as usize);
    v
}

/// Parses a size such as 4096, 64K, 16M, 1G.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

pub struct Lun {
    pub kind: Kind,
    pub block_size: u32,
    /// None: a CD without medium.
    pub store: Option<Store>,
    pub serial: String,
    /// Pending unit attention (asc, ascq), reported once.
    pub ua: Option<(u8, u8)>,
    /// Pending media event for GET EVENT STATUS NOTIFICATION (2 new, 3 removal).
    pub media_event: u8,
    pub write_cache: bool,
    /// T10 PI type 1 formatted (8 bytes of PI per block, kept beside the data).
    pub pi: bool,
    pub pi_store: Vec<u8>,
}

impl Lun {
    pub fn ram_disk(size: u64, serial: &str) -> Lun {
        Lun {
            kind: Kind::Disk,
            block_size: 512,
            store: Some(Store::Ram(vec![0; (size / 512 * 512) as usize])),
            serial: serial.into(),
            ua: None,
            media_event: 0,
            write_cache: true,
            pi: false,
            pi_store: Vec::new(),
        }
    }
    pub fn file_disk(path: &str, serial: &str) -> std::io::Result<Lun> {
        let f = File::options().read(true).write(true).open(path)?;
        let len = f.metadata()?.len() / 512 * 512;
        let mut l = Lun::ram_disk(0, serial);
        l.store = Some(Store::File(f, len));
        Ok(l)
    }
    pub fn cd(size: Option<u64>, serial: &str) -> Lun {
        Lun {
            kind: Kind::Cd,
            block_size: 2048,
            store: size.map(|s| Store::Ram(cd_image(s))),
            serial: serial.into(),
            ua: None,
            media_event: 0,
            write_cache: false,
            pi: false,
            pi_store: Vec::new(),
        }
    }

    /// Blocks of the medium (0 without one).
    pub fn blocks(&self) -> u64 {
        self.store
            .as_ref()
            .map_or(0, |s| s.len() / self.block_size as u64)
    }

    /// Inserts (Some(size)) or ejects (None) a CD medium; raises the unit
    /// attention and media event sr looks for.
    pub fn change_medium(&mut self, size: Option<u64>) {
        self.store = size.map(|s| Store::Ram(cd_image(s)));
        self.ua = Some((0x28, 0x00));
        self.media_event = if size.is_some() { 2 } else { 3 };
    }

    pub fn set_pi(&mut self, on: bool) {
        self.pi = on;
        // Guard 0xffff / app 0xffff: "no PI yet" (escape) until written.
        self.pi_store = if on {
            vec![0xff; self.blocks() as usize * 8]
        } else {
            Vec::new()
        };
    }

    pub fn inquiry_std(&self) -> Vec<u8> {
        let mut d = vec![0u8; 96];
        d[0] = if self.kind == Kind::Disk { 0x00 } else { 0x05 };
        d[1] = if self.kind == Kind::Cd { 0x80 } else { 0 };
        d[2] = 0x06; // SPC-4
        d[3] = 0x12; // HISUP, response data format 2
        d[4] = (d.len() - 5) as u8;
        d[5] = if self.pi { 0x01 } else { 0 }; // PROTECT
        d[7] = 0x02; // CMDQUE
        d[8..16].copy_from_slice(b"VSRS    ");
        let prod: &[u8; 16] = if self.kind == Kind::Disk {
            b"TESTDEV DISK    "
        } else {
            b"TESTDEV CD      "
        };
        d[16..32].copy_from_slice(prod);
        d[32..36].copy_from_slice(b"0001");
        d
    }

    fn vpd(&self, page: u8) -> Option<Vec<u8>> {
        let disk = self.kind == Kind::Disk;
        let mut d = vec![if disk { 0x00 } else { 0x05 }, page, 0, 0];
        match page {
            0x00 => {
                if disk {
                    d.extend_from_slice(&[0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
                } else {
                    d.extend_from_slice(&[0x00, 0x80, 0x83]);
                }
            }
            0x80 => d.extend_from_slice(self.serial.as_bytes()),
            0x83 => {
                // T10 vendor ID designator, ASCII.
                let mut id = b"VSRS    ".to_vec();
                id.extend_from_slice(self.serial.as_bytes());
                d.extend_from_slice(&[0x02, 0x01, 0x00, id.len() as u8]);
                d.extend_from_slice(&id);
            }
            0xb0 if disk => {
                let mut p = vec![0u8; 0x3c];
                p[1] = 0; // WSNZ off, no compare-and-write
                p[4..8].copy_from_slice(&65535u32.to_be_bytes()); // max transfer length
                p[8..12].copy_from_slice(&0u32.to_be_bytes()); // optimal transfer length
                d.extend_from_slice(&p);
            }
            0xb1 if disk => {
                let mut p = vec![0u8; 0x3c];
                p[0..2].copy_from_slice(&1u16.to_be_bytes()); // non-rotating medium
                d.extend_from_slice(&p);
            }
            0xb2 if disk => {
                d.extend_from_slice(&[0, 0, 0, 0]); // no provisioning
            }
            _ => return None,
        }
        let n = (d.len() - 4) as u16;
        d[2..4].copy_from_slice(&n.to_be_bytes());
        Some(d)
    }

    fn mode_pages(&self, page: u8) -> Option<Vec<u8>> {
        let caching = {
            let mut p = vec![0u8; 20];
            p[0] = 0x08;
            p[1] = 0x12;
            if self.write_cache {
                p[2] = 0x04; // WCE
            }
            p
        };
        let control = {
            let mut p = vec![0u8; 12];
            p[0] = 0x0a;
            p[1] = 0x0a;
            p[5] = 0x40; // ATO: application tag owned by the application client
            p
        };
        let caps = {
            let mut p = vec![0u8; 28];
            p[0] = 0x2a;
            p[1] = 26;
            p[6] = 0x29; // lock, eject, tray loading mechanism
            p
        };
        match (self.kind, page) {
            (Kind::Disk, 0x08) => Some(caching),
            (Kind::Disk, 0x0a) => Some(control),
            (Kind::Disk, 0x3f) => Some([caching, control].concat()),
            (Kind::Cd, 0x2a) => Some(caps),
            (Kind::Cd, 0x3f) => Some(caps),
            _ => None,
        }
    }

    fn not_ready(&self) -> Option<CmdResult> {
        if self.store.is_none() {
            Some(CmdResult::check(NOT_READY, 0x3a, 0x00))
        } else {
            None
        }
    }

    /// Executes one CDB. `data_out` is what the driver sent.
    pub fn execute(&mut self, cdb: &[u8], data_out: &[u8]) -> CmdResult {
        let op = cdb[0];
        // Commands that do not report a pending unit attention.
        if !matches!(op, 0x12 | 0x03 | 0xa0 | 0x4a) {
            if let Some((asc, ascq)) = self.ua.take() {
                return CmdResult::check(UNIT_ATTENTION, asc, ascq);
            }
        }
        match op {
            0x00 => self.not_ready().unwrap_or_default(), // TEST UNIT READY
            0x03 => {
                // REQUEST SENSE
                let s = match self.ua.take() {
                    Some((asc, ascq)) => sense(UNIT_ATTENTION, asc, ascq),
                    None if self.store.is_none() => sense(NOT_READY, 0x3a, 0),
                    None => sense(0, 0, 0),
                };
                CmdResult::data(trunc(s, cdb[4] as u64))
            }
            0x12 => {
                // INQUIRY
                let alloc = be16(&cdb[3..5]);
                if cdb[1] & 1 == 0 {
                    if cdb[2] != 0 {
                        return CmdResult::invalid_field();
                    }
                    return CmdResult::data(trunc(self.inquiry_std(), alloc));
                }
                match self.vpd(cdb[2]) {
                    Some(d) => CmdResult::data(trunc(d, alloc)),
                    None => CmdResult::invalid_field(),
                }
            }
            0x1a | 0x5a => {
                // MODE SENSE (6) / (10)
                let page = cdb[2] & 0x3f;
                let Some(pages) = self.mode_pages(page) else {
                    return CmdResult::invalid_field();
                };
                let dsp = if self.kind == Kind::Disk { 0x10 } else { 0 }; // DPOFUA
                let d = if op == 0x1a {
                    let mut d = vec![(3 + pages.len()) as u8, 0, dsp, 0];
                    d.extend_from_slice(&pages);
                    trunc(d, cdb[4] as u64)
                } else {
                    let n = (6 + pages.len()) as u16;
                    let mut d = n.to_be_bytes().to_vec();
                    d.extend_from_slice(&[0, dsp, 0, 0, 0, 0]);
                    d.extend_from_slice(&pages);
                    trunc(d, be16(&cdb[7..9]))
                };
                CmdResult::data(d)
            }
            0x15 | 0x55 => {
                // MODE SELECT: accepted, only WCE is remembered.
                let hdr = if op == 0x15 { 4 } else { 8 };
                if data_out.len() > hdr + 2 && data_out[hdr] & 0x3f == 0x08 {
                    self.write_cache = data_out[hdr + 2] & 0x04 != 0;
                }
                CmdResult {
                    data_out_used: data_out.len(),
                    ..Default::default()
                }
            }
            0x1b | 0x1e | 0x2f => CmdResult::good(), // START STOP, PREVENT ALLOW, VERIFY
            0x35 | 0x91 => {
                if let Some(s) = &self.store {
                    if s.sync().is_err() {
                        return CmdResult::check(MEDIUM_ERROR, 0x0c, 0x00);
                    }
                }
                CmdResult::good()
            }
            0x25 => {
                // READ CAPACITY (10)
                if let Some(r) = self.not_ready() {
                    return r;
                }
                let last = self.blocks().saturating_sub(1).min(0xffff_ffff) as u32;
                let mut d = last.to_be_bytes().to_vec();
                d.extend_from_slice(&self.block_size.to_be_bytes());
                CmdResult::data(d)
            }
            0x9e if cdb[1] & 0x1f == 0x10 => {
                // READ CAPACITY (16)
                if let Some(r) = self.not_ready() {
                    return r;
                }
                let mut d = vec![0u8; 32];
                d[0..8].copy_from_slice(&self.blocks().saturating_sub(1).to_be_bytes());
                d[8..12].copy_from_slice(&self.block_size.to_be_bytes());
                if self.pi {
                    d[12] = 0x01; // P_TYPE 0 (type 1), PROT_EN
                }
                CmdResult::data(trunc(d, be32(&cdb[10..14])))
            }
            0x08 | 0x28 | 0xa8 | 0x88 | 0x0a | 0x2a | 0xaa | 0x8a => self.rw(cdb, data_out),
            0x4a if self.kind == Kind::Cd => {
                // GET EVENT STATUS NOTIFICATION, polled, media class only
                if cdb[1] & 1 == 0 {
                    return CmdResult::invalid_field();
                }
                let alloc = be16(&cdb[7..9]);
                if cdb[4] & 0x10 == 0 {
                    return CmdResult::data(trunc(vec![0, 2, 0x80, 0x10], alloc));
                }
                let ev = std::mem::take(&mut self.media_event);
                let present = if self.store.is_some() { 0x02 } else { 0 };
                CmdResult::data(trunc(vec![0, 6, 0x04, 0x10, ev, present, 0, 0], alloc))
            }
            0x43 if self.kind == Kind::Cd => {
                // READ TOC, format 0: one data track and the lead-out
                if let Some(r) = self.not_ready() {
                    return r;
                }
                let msf = cdb[1] & 0x02 != 0;
                let addr = |lba: u64| -> [u8; 4] {
                    if msf {
                        let l = lba + 150;
                        [0, (l / 75 / 60) as u8, (l / 75 % 60) as u8, (l % 75) as u8]
                    } else {
                        (lba as u32).to_be_bytes()
                    }
                };
                let mut d = vec![0, 18, 1, 1, 0, 0x14, 1, 0];
                d.extend_from_slice(&addr(0));
                d.extend_from_slice(&[0, 0x14, 0xaa, 0]);
                d.extend_from_slice(&addr(self.blocks()));
                CmdResult::data(trunc(d, be16(&cdb[7..9])))
            }
            _ => CmdResult::invalid_opcode(),
        }
    }

    fn rw(&mut self, cdb: &[u8], data_out: &[u8]) -> CmdResult {
        let op = cdb[0];
        let (lba, nblocks) = match op {
            0x08 | 0x0a => {
                let lba = ((cdb[1] as u64 & 0x1f) << 16) | be16(&cdb[2..4]);
                let n = if cdb[4] == 0 { 256 } else { cdb[4] as u64 };
                (lba, n)
            }
            0x28 | 0x2a => (be32(&cdb[2..6]), be16(&cdb[7..9])),
            0xa8 | 0xaa => (be32(&cdb[2..6]), be32(&cdb[6..10])),
            _ => (be64(&cdb[2..10]), be32(&cdb[10..14])),
        };
        let write = matches!(op, 0x0a | 0x2a | 0xaa | 0x8a);
        if let Some(r) = self.not_ready() {
            return r;
        }
        if write && self.kind == Kind::Cd {
            return CmdResult::check(0x07, 0x27, 0x00); // DATA PROTECT, write protected
        }
        if lba.checked_add(nblocks).map_or(true, |e| e > self.blocks()) {
            return CmdResult::lba_out_of_range();
        }
        let bs = self.block_size as u64;
        let bytes = (nblocks * bs) as usize;
        // With PI (RDPROTECT/WRPROTECT != 0) 8 bytes per block travel too.
        let protect = if matches!(op, 0x08 | 0x0a) {
            0
        } else {
            cdb[1] >> 5
        };
        let pi = self.pi && protect != 0;
        let store = self.store.as_mut().unwrap();
        if write {
            let pi_bytes = if pi { nblocks as usize * 8 } else { 0 };
            if data_out.len() < bytes + pi_bytes {
                // Less data than the CDB says: write nothing.
                return CmdResult::check(ILLEGAL_REQUEST, 0x24, 0x00);
            }
            // Virtio puts the PI before the data (virtio_scsi_cmd_req_pi).
            let (pi_part, data) = data_out.split_at(pi_bytes);
            if pi {
                for b in 0..nblocks as usize {
                    let guard = u16::from_be_bytes([pi_part[b * 8], pi_part[b * 8 + 1]]);
                    let blk = &data[b * bs as usize..(b + 1) * bs as usize];
                    if guard != crc_t10dif(blk) {
                        return CmdResult::check(ABORTED_COMMAND, 0x10, 0x01); // guard check failed
                    }
                }
            }
            if store.write(lba * bs, &data[..bytes]).is_err() {
                return CmdResult::check(MEDIUM_ERROR, 0x0c, 0x00);
            }
            if pi {
                let at = lba as usize * 8;
                self.pi_store[at..at + pi_bytes].copy_from_slice(pi_part);
            }
            CmdResult {
                data_out_used: bytes + pi_bytes,
                ..Default::default()
            }
        } else {
            let mut buf = vec![0u8; bytes];
            if store.read(lba * bs, &mut buf).is_err() {
                return CmdResult::check(MEDIUM_ERROR, 0x11, 0x00);
            }
            if pi {
                let at = lba as usize * 8;
                let mut d = self.pi_store[at..at + nblocks as usize * 8].to_vec();
                d.extend_from_slice(&buf);
                return CmdResult::data(d);
            }
            CmdResult::data(buf)
        }
    }
}

pub const ABORTED_COMMAND: u8 = 0x0b;

/// CRC-16 T10-DIF (poly 0x8bb7), the guard tag of T10 PI.
pub fn crc_t10dif(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x8bb7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A CD image of `size` bytes; its first block says what it is.
fn cd_image(size: u64) -> Vec<u8> {
    let mut v = vec![0u8; (size / 2048 * 2048).max(2048) as usize];
    let tag = b"VSRS TESTDEV CD MEDIUM";
    v[..tag.len()].copy_from_slice(tag);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdb(bytes: &[u8]) -> [u8; 32] {
        let mut c = [0u8; 32];
        c[..bytes.len()].copy_from_slice(bytes);
        c
    }

    #[test]
    fn inquiry_and_vpd() {
        let mut l = Lun::ram_disk(1 << 20, "s1");
        let r = l.execute(&cdb(&[0x12, 0, 0, 0, 36]), &[]);
        assert_eq!(r.status, GOOD);
        assert_eq!(r.data_in.len(), 36);
        assert_eq!(&r.data_in[8..16], b"VSRS    ");
        let r = l.execute(&cdb(&[0x12, 1, 0x00, 0, 255]), &[]);
        assert_eq!(&r.data_in[4..], &[0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
        let r = l.execute(&cdb(&[0x12, 1, 0x80, 0, 255]), &[]);
        assert_eq!(&r.data_in[4..], b"s1");
        for p in [0x83, 0xb0, 0xb1, 0xb2] {
            let r = l.execute(&cdb(&[0x12, 1, p, 0, 255]), &[]);
            assert_eq!(r.status, GOOD, "page {p:#x}");
            assert_eq!(be16(&r.data_in[2..4]) as usize, r.data_in.len() - 4);
        }
        let r = l.execute(&cdb(&[0x12, 1, 0x89, 0, 255]), &[]);
        assert_eq!(r.sense[12], 0x24);
    }

    #[test]
    fn capacity_and_rw() {
        let mut l = Lun::ram_disk(1 << 20, "s");
        let r = l.execute(&cdb(&[0x25]), &[]);
        assert_eq!(r.data_in, [0, 0, 0x07, 0xff, 0, 0, 2, 0]);
        let r = l.execute(
            &cdb(&[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32]),
            &[],
        );
        assert_eq!(be64(&r.data_in), 2047);
        let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
        let r = l.execute(&cdb(&[0x2a, 0, 0, 0, 0, 10, 0, 0, 2]), &data);
        assert_eq!((r.status, r.data_out_used), (GOOD, 1024));
        let r = l.execute(&cdb(&[0x88, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 2]), &[]);
        assert_eq!(r.data_in, data);
        let r = l.execute(&cdb(&[0x08, 0, 0, 10, 1]), &[]);
        assert_eq!(r.data_in, data[..512]);
        let r = l.execute(&cdb(&[0x28, 0, 0, 0, 0x07, 0xff, 0, 0, 2]), &[]);
        assert_eq!(r.sense[12], 0x21);
    }

    #[test]
    fn unknown_opcode_and_mode_sense() {
        let mut l = Lun::ram_disk(1 << 20, "s");
        let r = l.execute(&cdb(&[0xd5]), &[]);
        assert_eq!(
            (r.status, r.sense[2], r.sense[12]),
            (CHECK_CONDITION, ILLEGAL_REQUEST, 0x20)
        );
        let r = l.execute(&cdb(&[0x1a, 0, 0x08, 0, 255]), &[]);
        assert_eq!(r.data_in[0] as usize, r.data_in.len() - 1);
        assert_eq!(r.data_in[4], 0x08);
        assert_eq!(r.data_in[6] & 0x04, 0x04);
        let r = l.execute(&cdb(&[0x5a, 0, 0x3f, 0, 0, 0, 0, 1, 0]), &[]);
        assert_eq!(be16(&r.data_in) as usize, r.data_in.len() - 2);
    }

    #[test]
    fn cd_medium_change() {
        let mut l = Lun::cd(None, "cd");
        assert_eq!(l.execute(&cdb(&[0x00]), &[]).sense[12], 0x3a);
        l.change_medium(Some(1 << 20));
        let r = l.execute(&cdb(&[0x00]), &[]);
        assert_eq!((r.sense[2], r.sense[12]), (UNIT_ATTENTION, 0x28));
        assert_eq!(l.execute(&cdb(&[0x00]), &[]).status, GOOD);
        let r = l.execute(&cdb(&[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]), &[]);
        assert_eq!(r.data_in, [0, 6, 4, 0x10, 2, 2, 0, 0]);
        let r = l.execute(&cdb(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1]), &[]);
        assert_eq!(&r.data_in[..4], b"VSRS");
    }

    #[test]
    fn crc_t10dif_known_value() {
        assert_eq!(crc_t10dif(b"123456789"), 0xd0db);
    }
}
