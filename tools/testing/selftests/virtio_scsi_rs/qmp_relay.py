#!/usr/bin/env python3
"""Host side of the guest<->QMP control channel (tools/run-guest --ctl).

Connects to QEMU's QMP socket and to the chardev socket behind the guest's
virtio-serial port "vsrs.ctl" (both QEMU servers with wait=off; retried until
QEMU has created them), does the QMP handshake, then relays: each line the
guest writes is one JSON command, forwarded to QMP; the reply (the "return" or
"error" object, asynchronous events skipped) goes back as one line.

Pseudo-commands handled here, not by QEMU:
  {"wait-event": "NAME", "timeout": 10, "data": {"device": "x"}}
      replies {"return": EVENT} with the first event NAME (whose data contains
      the given keys/values) received since the last "clear-events", consuming
      it; {"error": {"class": "Timeout", ...}} after timeout seconds.
  {"clear-events": true}    forgets the events received so far.
  {"sleep": SECONDS}        host-side sleep (e.g. to let time pass in QEMU).
A malformed line gets {"error": {"class": "RelayError", "desc": ...}}.

Exits when QEMU closes the QMP socket (QEMU exited). Standard library only.

    qmp_relay.py QMP_SOCKET CTL_SOCKET [LOG]
"""
import json
import os
import select
import socket
import sys
import time


def log(msg):
    if LOG:
        LOG.write("%.3f %s\n" % (time.time(), msg))
        LOG.flush()


def connect(path, deadline):
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.time() > deadline:
                raise
            time.sleep(0.1)


class Lines:
    """Line reader over a socket, usable with select()."""

    def __init__(self, sock):
        self.sock, self.buf, self.eof = sock, b"", False

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
        self.buf += data

    def pop(self):
        if b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            return line.decode("utf-8", "replace").strip("\r")
        return None


def main():
    global LOG
    qmp_path, ctl_path = sys.argv[1], sys.argv[2]
    LOG = open(sys.argv[3], "a") if len(sys.argv) > 3 else None
    deadline = time.time() + 120
    qmp_sock = connect(qmp_path, deadline)
    ctl_sock = connect(ctl_path, deadline)
    qmp, ctl = Lines(qmp_sock), Lines(ctl_sock)
    events = []

    def qmp_read(timeout):
        """One QMP message, or None on timeout. Raises EOFError on EOF."""
        end = time.time() + timeout
        while True:
            line = qmp.pop()
            if line is not None:
                if not line.strip():
                    continue
                msg = json.loads(line)
                if "event" in msg:
                    log("event %s" % line)
                    events.append(msg)
                    continue
                return msg
            if qmp.eof:
                raise EOFError
            left = end - time.time()
            if left <= 0:
                return None
            r, _, _ = select.select([qmp_sock], [], [], left)
            if r:
                qmp.fill()

    def qmp_events(timeout):
        """Collects events for up to timeout seconds (raises EOFError on EOF)."""
        end = time.time() + timeout
        while True:
            left = end - time.time()
            r, _, _ = select.select([qmp_sock], [], [], max(left, 0))
            if not r:
                return
            qmp.fill()
            while True:
                line = qmp.pop()
                if line is None:
                    break
                if line.strip():
                    msg = json.loads(line)
                    if "event" in msg:
                        log("event %s" % line)
                        events.append(msg)
            if qmp.eof:
                raise EOFError
            if timeout == 0:
                return

    def execute(cmd):
        qmp_sock.sendall((json.dumps(cmd) + "\n").encode())
        while True:
            msg = qmp_read(3600)
            if msg is not None and ("return" in msg or "error" in msg):
                return msg

    greeting = qmp_read(60)
    log("greeting %s" % json.dumps(greeting))
    log("capabilities %s" % json.dumps(execute({"execute": "qmp_capabilities"})))

    def matches(ev, name, data):
        if ev.get("event") != name:
            return False
        evd = ev.get("data", {})
        return all(evd.get(k) == v for k, v in (data or {}).items())

    def handle(line):
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            return {"error": {"class": "RelayError", "desc": "bad JSON: %s" % e}}
        if "wait-event" in cmd:
            name, data = cmd["wait-event"], cmd.get("data")
            end = time.time() + float(cmd.get("timeout", 10))
            while True:
                for i, ev in enumerate(events):
                    if matches(ev, name, data):
                        del events[i]
                        return {"return": ev}
                left = end - time.time()
                if left <= 0:
                    return {"error": {"class": "Timeout",
                                      "desc": "no %s event in %ss" % (name, cmd.get("timeout", 10))}}
                qmp_events(min(left, 1.0))
        if "clear-events" in cmd:
            n = len(events)
            events.clear()
            return {"return": {"cleared": n}}
        if "sleep" in cmd:
            qmp_events(float(cmd["sleep"]))
            return {"return": {}}
        if "execute" not in cmd:
            return {"error": {"class": "RelayError", "desc": "no execute key"}}
        return execute(cmd)

    while True:
        r, _, _ = select.select([qmp_sock, ctl_sock], [], [])
        if qmp_sock in r:
            qmp_events(0)
        if ctl_sock in r:
            ctl.fill()
            while True:
                line = ctl.pop()
                if line is None:
                    break
                if not line.strip():
                    continue
                log("guest %s" % line)
                reply = json.dumps(handle(line))
                log("reply %s" % reply)
                ctl_sock.sendall((reply + "\n").encode())
            if ctl.eof:
                # The guest side cannot close a virtio-serial port's host end;
                # EOF here means QEMU went away.
                log("ctl EOF")
                return


if __name__ == "__main__":
    LOG = None
    try:
        main()
    except (EOFError, ConnectionError, BrokenPipeError):
        log("QEMU went away")
    except OSError as e:
        sys.stderr.write("qmp_relay: %s\n" % e)
        sys.exit(1)
    sys.exit(0)
