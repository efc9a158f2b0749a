#!/bin/bash
# Host-side test of reports.sh (make check): the known sr_done report is
# counted apart, and every report that is not exactly it still fails.
# TAP; ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")" && . ./reports.sh

# The report as Linux 7.2's lockdep prints it (print_usage_bug), in dmesg
# form, from an sr read failing near the end of a disc.
known_sample() {
	cat <<'EOF'
[   41.052311] sr 0:0:2:0: [sr0] tag#3 Sense Key : Illegal Request [current]
[   41.052698] 
[   41.052700] ================================
[   41.052702] WARNING: inconsistent lock state
[   41.052705] 7.2.0 #1 Not tainted
[   41.052707] --------------------------------
[   41.052708] inconsistent {HARDIRQ-ON-W} -> {IN-HARDIRQ-W} usage.
[   41.052711] swapper/1/0 [HC1[1]:SC0[0]:HE0:SE1] takes:
[   41.052714] ffff888006a1c2d8 (&bdev->bd_size_lock){?.+.}-{3:3}, at: bdev_set_nr_sectors+0x1c/0x60
[   41.052722] {HARDIRQ-ON-W} state was registered at:
[   41.052724]   lock_acquire+0xc4/0x2d0
[   41.052728]   _raw_spin_lock+0x2f/0x40
[   41.052731]   bdev_set_nr_sectors+0x1c/0x60
[   41.052734]   set_capacity+0x2c/0x50
[   41.052737]   sr_revalidate_disk+0x95/0xd0
[   41.052740]   sr_probe+0x2ff/0x410
[   41.052743] irq event stamp: 118734
[   41.052745] hardirqs last  enabled at (118733): [<ffffffff81e0b8a4>] default_idle_call+0x84/0x100
[   41.052750] hardirqs last disabled at (118734): [<ffffffff81dfe5c9>] common_interrupt+0x19/0xc0
[   41.052755] 
[   41.052755] other info that might help us debug this:
[   41.052757]  Possible unsafe locking scenario:
[   41.052758] 
[   41.052759]        CPU0
[   41.052760]        ----
[   41.052761]   lock(&bdev->bd_size_lock);
[   41.052763]   <Interrupt>
[   41.052764]     lock(&bdev->bd_size_lock);
[   41.052766] 
[   41.052766]  *** DEADLOCK ***
[   41.052767] 
[   41.052768] no locks held by swapper/1/0.
[   41.052770] 
[   41.052770] stack backtrace:
[   41.052772] CPU: 1 UID: 0 PID: 0 Comm: swapper/1 Not tainted 7.2.0 #1 PREEMPT(voluntary)
[   41.052776] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[   41.052778] Call Trace:
[   41.052779]  <IRQ>
[   41.052780]  dump_stack_lvl+0x5d/0x80
[   41.052784]  print_usage_bug.part.0+0x22b/0x2c0
[   41.052788]  mark_lock+0x6ad/0x800
[   41.052791]  __lock_acquire+0x8a6/0x2170
[   41.052794]  lock_acquire+0xc4/0x2d0
[   41.052797]  _raw_spin_lock+0x2f/0x40
[   41.052800]  bdev_set_nr_sectors+0x1c/0x60
[   41.052803]  set_capacity+0x2c/0x50
[   41.052806]  sr_done+0x1a2/0x270
[   41.052809]  scsi_finish_command+0xd6/0x110
[   41.052812]  scsi_complete+0x6d/0x110
[   41.052815]  blk_mq_complete_request+0x2d/0x40
[   41.052818]  vring_interrupt+0x6a/0xa0
[   41.052821]  __handle_irq_event_percpu+0x86/0x2a0
[   41.052824]  handle_irq_event+0x38/0x80
[   41.052827]  handle_edge_irq+0x88/0x210
[   41.052830]  __common_interrupt+0x4a/0xe0
[   41.052833]  common_interrupt+0x9c/0xc0
[   41.052836]  </IRQ>
[   41.052837]  <TASK>
[   41.052838]  asm_common_interrupt+0x26/0x40
[   41.052841]  default_idle+0x13/0x20
[   41.052844]  </TASK>
[   41.052846] sr 0:0:2:0: [sr0] tag#3 CDB: Read(10) 28 00 00 00 07 f8 00 00 08 00
EOF
}

# The same report when the completion's interrupt came in on a task, not
# on the idle loop: the trace has that task's registers and frames (seen
# on the debug kernel, a scan's scsi_device_put interrupted).
on_task_sample() {
	known_sample | awk '/ default_idle\+/ {
		t = "[   41.052843] "
		print t "RIP: 0010:lockdep_unregister_key+0x268/0x2f0"
		print t "Code: 0c c6 01 0f 85 9a 00 00 00 83 f0 01 89 05 30 0c c6 01 48 ff 0d d9 <74> 13 48"
		print t "RSP: 0018:ff110000030e7340 EFLAGS: 00000202"
		print t "RAX: ff11000005e38000 RBX: ff1100000665d301 RCX: ffffffffa2720a00"
		print t "RDX: 00000000000067f2 RSI: 0000000000000005 RDI: 00000000000067ed"
		print t "RBP: ff11000005e38000 R08: 000000000000003c R09: ffffffffffffffff"
		print t "R10: 000000000000001d R11: ffffffffa0d7d1b0 R12: ff1100000665d349"
		print t "R13: 0000000000001000 R14: 0000000000000a07 R15: 0000000000000000"
		print t " blk_put_queue+0x86/0xd0"
		print t " scsi_device_dev_release+0x254/0x890"
		next
	} { print }'
}

n=0 pass=0 fail=0
known=$(mktemp)
trap 'rm -f "$known"' EXIT
# check_case DESC WANT-STATUS WANT-KNOWN: kernel_report over $input fails (1)
# or not (0), and counts WANT-KNOWN known reports.
check_case() {
	local status count
	kernel_report 3 3>"$known" >/dev/null <<<"$input"
	status=$?
	count=$(grep -c . "$known")
	n=$((n + 1))
	if [ "$status" = "$2" ] && [ "$count" = "$3" ]; then
		pass=$((pass + 1)); echo "ok $n $1"
	else
		fail=$((fail + 1)); echo "not ok $n $1 (status $status, known $count; want $2, $3)"
	fi
}

input=$(known_sample)
check_case "the sr_done report alone: counted apart, not a failure" 0 1
input=$(known_sample; known_sample)
check_case "two sr_done reports: both counted apart" 0 2
input=$(known_sample | tr '\n' '\r' | sed 's/\r/\r\n/g')
check_case "the sr_done report from a console (CR LF): counted apart" 0 1
input=$(on_task_sample)
check_case "the sr_done report on a task's registers (RIP: lockdep_...): counted apart" 0 1
input=$(on_task_sample; echo '[   42.000000] RIP: 0010:x+0x1/0x2'; echo '[   42.000001] Call Trace:')
check_case "a trace after it, outside the report: a failure" 1 1
input=$(known_sample; echo '[   42.000000] WARNING: CPU: 0 PID: 7 at drivers/scsi/scsi_lib.c:1 x+0x1/0x2')
check_case "a warning after the sr_done report: a failure" 1 1
input=$(known_sample | sed 's/bdev->bd_size_lock){/q->queue_lock){/')
check_case "the same report for another lock: a failure" 1 0
input=$(known_sample | sed 's/HARDIRQ-ON-W} -> {IN-HARDIRQ-W/SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W/')
check_case "the same report for another usage: a failure" 1 0
input=$(known_sample | grep -v 'sr_done+')
check_case "the same report without sr_done in the backtrace: a failure" 1 0
input=$(known_sample | sed '/stack backtrace/,$d')
check_case "the report cut short before its backtrace: a failure" 1 0
input=$(known_sample | sed 's/  sr_done+/  ? sr_done+/; s/^\(\[ *[0-9.]*\] \) sr_done+/\1 ? sr_done+/')
check_case "sr_done only as an unreliable frame (? sr_done): a failure" 1 0
input=$(known_sample | sed 's/Call Trace:$/Call trace:/')
check_case "the sr_done report with arm64's \"Call trace:\": counted apart" 0 1
input=$(printf '%s\n' '[    9.000000] Hardware name: linux,dummy-virt (DT)' '[    9.000001] Call trace:' \
	'[    9.000002]  show_stack+0x20/0x38' '[    9.000003]  dump_stack_lvl+0x60/0x80')
check_case "an arm64 stack dump (\"Call trace:\"): a failure" 1 0
input='[    1.000000] BUG: KASAN: slab-use-after-free in x+0x1/0x2'
check_case "a KASAN report: a failure" 1 0
input='[    1.000000] sd 0:0:0:0: [sda] 131072 512-byte logical blocks'
check_case "no report: no failure" 0 0

echo "1..$n"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
