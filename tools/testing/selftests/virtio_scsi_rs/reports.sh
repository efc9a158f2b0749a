# shellcheck shell=bash
# Kernel reports in a kernel log, for the guest tests (lib.sh, on the guest's
# dmesg) and the host side (run_tests.sh, on the guest's console). Sourced.

# A line of any report a test fails on: warning, bug, sanitizer, lockdep,
# hung task, panic, a stack dump ("Call Trace:" on x86, "Call trace:" on
# arm64).
report_re='WARNING:|BUG:|KASAN|UBSAN|Oops|general protection|lockdep|possible (recursive|circular) locking|inconsistent lock state|blocked for more than|Call [Tt]race|Kernel panic'

# The one report that is not ours and is counted apart: Linux 7.2's sr_done
# shortens a disc's capacity on a failed read near the end of the medium
# (set_capacity, which takes bdev->bd_size_lock) in the completion's hardirq,
# and lockdep reports "inconsistent lock state" for it with the C driver too.
# The line is matched by nothing in report_re.
known_report_line='vsrs-known-report: Linux 7.2 sr_done takes bd_size_lock in hardirq (a lock-validator report counted apart: not this driver; the validator is off from here on)'

# known_reports: a kernel log on stdin, out again with each report of
# exactly that bug replaced by $known_report_line. Exactly: a lockdep
# "inconsistent lock state" report whose usage is {HARDIRQ-ON-W} ->
# {IN-HARDIRQ-W}, whose lock taken is &bdev->bd_size_lock, and whose backtrace
# runs through sr_done; any other report, or one cut short, is left as it is.
known_reports() {
	awk -v known="$known_report_line" '
	# The message of a kernel log line ("[ 12.345678] MSG"), or "" with
	# is_kernel 0 for a line that is not one (user output on a console).
	function message(line) {
		sub(/\r$/, "", line)
		is_kernel = match(line, /^\[ *[0-9]+\.[0-9]+\] ?/)
		return is_kernel ? substr(line, RLENGTH + 1) : ""
	}
	function begin_block() {
		state = 1; n = 0; usage = 0; lock = 0; sr = 0; takes = 0
	}
	function end_block(   i) {
		if (state == 2 && usage && lock && sr)
			print known
		else
			for (i = 1; i <= n; i++) print block[i]
		state = 0; n = 0
	}
	{ m = message($0) }
	state && !is_kernel { print; next }
	# The trace goes on through the registers of the task the interrupt
	# came in on (x86 show_regs: RIP, Code, RSP and the general registers).
	state == 2 && m !~ /^ / && m !~ /^(RIP|Code|RSP|RAX|RDX|RBP|R10|R13): / { end_block() }
	state == 0 && m ~ /^WARNING: inconsistent lock state$/ { begin_block() }
	state == 0 { print; next }
	{ block[++n] = $0 }
	state == 1 {
		if (m ~ /^inconsistent \{HARDIRQ-ON-W\} -> \{IN-HARDIRQ-W\} usage\.$/) usage = 1
		if (takes && m ~ /\(&bdev->bd_size_lock\)/) lock = 1
		takes = m ~ / takes:$/
		if (m ~ /^Call [Tt]race:$/) state = 2
		else if (n > 400) end_block()
		next
	}
	state == 2 && m ~ /^ sr_done\+/ { sr = 1 }
	END { if (state) end_block() }
	'
}

# kernel_report FD: a kernel log on stdin; prints its first report with what
# led to it and what followed, and fails, when it has one. Each known report
# is counted apart: a "# $known_report_line" line on FD.
kernel_report() {
	local log
	log=$(known_reports)
	grep -F -x "$known_report_line" <<<"$log" | sed 's/^/# /' >&"$1"
	! grep -a -m1 -B10 -A50 -E "$report_re" <<<"$log"
}
