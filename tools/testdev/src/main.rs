// SPDX-License-Identifier: GPL-2.0
//! vsrs-testdev: a programmable virtio-scsi test device, a vhost-user-scsi
//! backend for QEMU's vhost-user-scsi-pci. See Documentation/virtio_scsi_rs.rst.
//!
//!   vsrs-testdev --socket PATH [--control PATH] [--lun T:L:TYPE[:ARG]]...
//!                [--queues N] [--t10-pi] [--event-idx] [--parent PID] [-v]
//!                [--fuzz SEED [--fuzz-rate N] [--fuzz-tmf-rate N]
//!                 [--fuzz-weights KIND=W,...] [--fuzz-hard T:L,...] [--fuzz-budget N]]
//!
//! VIRTIO_RING_F_EVENT_IDX is off unless --event-idx: QEMU 7.2's
//! vhost-user-scsi starts the backend without passing the driver's acked
//! features (the backend would not know the driver uses event indexes and
//! never publish avail_event: the driver then stops kicking).
//! TYPE: disk (ARG: size, default 64M), cd (ARG: medium size, or "empty"),
//! file (ARG: path of an image, used read-write).
//! --fuzz SEED: lie about N (default 20) in 1000 commands and N (250) in
//! 1000 TMFs, the kind drawn by weight (src/fuzz.rs lists them); lies that
//! fail a command only about the --fuzz-hard LUNs; at most --fuzz-budget
//! lies. The control command "fuzz" reads and changes all of it.

mod backend;
mod device;
mod fuzz;
mod scsi;
mod vring;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::exit;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{json, Value};
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use backend::Backend;
use device::Device;

type Shared = Arc<RwLock<Backend>>;

fn usage(msg: &str) -> ! {
    eprintln!("vsrs-testdev: {msg}");
    eprintln!(
        "usage: vsrs-testdev --socket PATH [--control PATH] [--lun T:L:disk[:SIZE]|T:L:cd[:SIZE|empty]|T:L:file:PATH]...\n\
         \x20                   [--queues N] [--t10-pi] [--event-idx] [--parent PID] [-v]\n\
         \x20                   [--fuzz SEED [--fuzz-rate N] [--fuzz-tmf-rate N] [--fuzz-weights KIND=W,...]\n\
         \x20                    [--fuzz-hard T:L,...] [--fuzz-budget N]]\n\
         lie kinds (default weight; * only about --fuzz-hard LUNs):\n{}",
        fuzz::KINDS
            .iter()
            .map(|k| format!(
                "  {:<19}{:>2}{} {}",
                k.name,
                k.weight,
                if k.hard { '*' } else { ' ' },
                k.what
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    exit(2)
}

/// A --lun spec as the JSON object add_lun takes.
fn lun_spec(s: &str) -> Result<Value, String> {
    let p: Vec<&str> = s.splitn(4, ':').collect();
    if p.len() < 3 {
        return Err(format!("bad --lun {s}"));
    }
    let t: u64 = p[0].parse().map_err(|_| format!("bad target in {s}"))?;
    let l: u64 = p[1].parse().map_err(|_| format!("bad lun in {s}"))?;
    let mut v = json!({"target": t, "lun": l, "type": p[2]});
    match (p[2], p.get(3)) {
        ("file", Some(path)) => v["path"] = json!(path),
        ("cd", Some(&"empty")) => v["medium"] = json!(false),
        (_, Some(size)) => v["size"] = json!(size),
        _ => {}
    }
    Ok(v)
}

/// Applies one control line, kicks the worker; returns the reply line.
fn control_line(shared: &Shared, line: &str) -> String {
    let reply = match serde_json::from_str::<Value>(line) {
        Ok(v) => {
            let mut b = shared.write().unwrap();
            let r = b.dev.control(&v);
            if b.verbose {
                eprintln!("testdev: control {line} -> {r}");
            }
            let _ = b.kick.write(1);
            r
        }
        Err(e) => json!({"ok": false, "error": format!("bad JSON: {e}")}),
    };
    reply.to_string()
}

fn serve_control(shared: Shared, conn: UnixStream) {
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let r = control_line(&shared, line);
        if writeln!(w, "{r}").is_err() {
            return;
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut socket, mut control, mut luns) = (None, None, Vec::new());
    let (mut queues, mut t10_pi, mut event_idx, mut parent, mut verbose) =
        (8usize, false, false, None, false);
    let mut fuzz = serde_json::Map::new();
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--socket" => socket = Some(val()),
            "--control" => control = Some(val()),
            "--lun" => luns.push(lun_spec(&val()).unwrap_or_else(|e| usage(&e))),
            "--queues" => queues = val().parse().unwrap_or_else(|_| usage("bad --queues")),
            "--t10-pi" => t10_pi = true,
            "--no-event-idx" => event_idx = false,
            "--event-idx" => event_idx = true,
            "--parent" => {
                parent = Some(
                    val()
                        .parse::<i32>()
                        .unwrap_or_else(|_| usage("bad --parent")),
                )
            }
            "--fuzz" | "--fuzz-rate" | "--fuzz-tmf-rate" | "--fuzz-budget" => {
                let n = val()
                    .parse::<u64>()
                    .unwrap_or_else(|_| usage(&format!("bad {a}")));
                let key = match a.as_str() {
                    "--fuzz" => "seed",
                    "--fuzz-rate" => "rate",
                    "--fuzz-tmf-rate" => "tmf_rate",
                    _ => "budget",
                };
                fuzz.insert(key.into(), json!(n));
            }
            "--fuzz-weights" => {
                let w = fuzz::weights_arg(&val()).unwrap_or_else(|e| usage(&e));
                fuzz.insert("weights".into(), w);
            }
            "--fuzz-hard" => {
                let v = val();
                fuzz.insert("hard".into(), json!(v.split(',').collect::<Vec<_>>()));
            }
            "-v" | "--verbose" => verbose = true,
            "-h" | "--help" => usage("help"),
            o => usage(&format!("unknown argument {o}")),
        }
    }
    let socket = socket.unwrap_or_else(|| usage("--socket is required"));
    if queues == 0 || queues > 62 {
        usage("--queues: 1-62");
    }

    let mut dev = Device::new();
    dev.t10_pi = t10_pi;
    for v in &luns {
        let (t, l) = (
            v["target"].as_u64().unwrap() as u8,
            v["lun"].as_u64().unwrap() as u16,
        );
        match Device::make_lun(v, t, l) {
            Ok(mut lun) => {
                if t10_pi && lun.kind == scsi::Kind::Disk {
                    lun.set_pi(true);
                }
                dev.luns.insert((t, l), lun);
            }
            Err(e) => usage(&e),
        }
    }
    if !fuzz.is_empty() {
        if !fuzz.contains_key("seed") {
            usage("--fuzz-* options need --fuzz SEED");
        }
        let mut f = fuzz::Fuzz::new(0);
        f.configure(&Value::Object(fuzz))
            .unwrap_or_else(|e| usage(&format!("fuzz: {e}")));
        eprintln!("vsrs-testdev: fuzz {}", f.status());
        dev.fuzz = Some(f);
    }
    let mut be = Backend::new(dev, queues).expect("eventfd");
    be.event_idx_offered = event_idx;
    be.verbose = verbose;
    let kick_id = be.kick_id();
    let kick_fd = be.kick.try_clone().expect("eventfd");
    let shared: Shared = Arc::new(RwLock::new(be));

    let mut daemon = VhostUserDaemon::new(
        "vsrs-testdev".into(),
        shared.clone(),
        GuestMemoryAtomic::new(GuestMemoryMmap::new()),
    )
    .unwrap_or_else(|e| usage(&format!("daemon: {e:?}")));
    use std::os::fd::AsRawFd;
    for h in daemon.get_epoll_handlers() {
        h.register_listener(kick_fd.as_raw_fd(), EventSet::IN, kick_id)
            .unwrap_or_else(|e| usage(&format!("register kick: {e}")));
    }

    if let Some(path) = control {
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap_or_else(|e| usage(&format!("{path}: {e}")));
        let s = shared.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve_control(s, c));
            }
        });
    }
    if let Some(pid) = parent {
        // Exit with the process that started us (the guest runner).
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            // SAFETY: kill(2) with signal 0 only checks that `pid` exists;
            // it takes plain integers and touches no memory of ours.
            if unsafe { libc_kill(pid, 0) } != 0 {
                eprintln!("vsrs-testdev: parent {pid} is gone, exiting");
                exit(0);
            }
        });
    }

    let listener =
        Listener::new(&socket, true).unwrap_or_else(|e| usage(&format!("{socket}: {e:?}")));
    eprintln!(
        "vsrs-testdev: listening on {socket}, {} LUNs, {queues} request queues",
        luns.len()
    );
    if let Err(e) = daemon.start(listener) {
        eprintln!("vsrs-testdev: start: {e:?}");
        exit(1);
    }
    let r = daemon.wait();
    let _ = shared.read().unwrap().exit_event.write(1);
    if verbose {
        eprintln!("vsrs-testdev: front-end gone ({r:?}), exiting");
    }
    exit(0)
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
