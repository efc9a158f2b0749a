// SPDX-License-Identifier: GPL-2.0
/*
 * pcprof: a QEMU TCG plugin that counts how often each guest kernel
 * instruction runs between two markers (make bench BENCH_ARGS=--profile).
 *
 *   -plugin file=pcprof.so,marker=0xADDR,out=PATH
 *
 * Every translated block of kernel code (a virtual address in the upper
 * half) gets an inline counter. Each time the guest runs the instruction at
 * the marker (the kernel's __x64_sys_sync, the guest booted with nokaslr), a
 * window opens or, when one is open, closes: at the close every kernel
 * instruction that ran in the window is written to PATH as
 * "WINDOW ADDRESS COUNT" (decimal window from 0, hex address, decimal
 * count; an address translated into several blocks has a line per block).
 * tools/bench/pcprof.py turns that into instructions per I/O per function.
 *
 * One vCPU: the inline counters are plain adds, not atomic.
 *
 * Written against QEMU 7.2's plugin API (version 1); the few declarations
 * it needs are below, so that no QEMU headers are needed to build it.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum { PCPROF_INLINE_ADD_U64 = 0, PCPROF_CB_NO_REGS = 0 };

size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, int op, void *ptr,
					      uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
					  void (*cb)(unsigned int vcpu, void *udata), int flags,
					  void *udata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
					   void (*cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb));
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
				    void (*cb)(qemu_plugin_id_t id, void *udata), void *udata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* A translated block of kernel code: its instructions and how often it ran. */
struct block {
	uint64_t count;	/* runs, updated inline by the generated code */
	uint64_t start;	/* count when the window opened */
	struct block *next;
	size_t n;
	uint64_t pc[];
};

static struct block *blocks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t marker;
static FILE *out;
static bool open_window;
static unsigned int window;

static void on_marker(unsigned int vcpu, void *udata)
{
	struct block *b;
	size_t i;

	(void)vcpu;
	(void)udata;
	pthread_mutex_lock(&lock);
	for (b = blocks; b; b = b->next) {
		if (!open_window) {
			b->start = b->count;
			continue;
		}
		if (b->count == b->start)
			continue;
		for (i = 0; i < b->n; i++)
			fprintf(out, "%u %" PRIx64 " %" PRIu64 "\n", window, b->pc[i],
				b->count - b->start);
	}
	if (open_window) {
		window++;
		fflush(out);
	}
	open_window = !open_window;
	pthread_mutex_unlock(&lock);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t i, n = qemu_plugin_tb_n_insns(tb);
	struct block *b;

	(void)id;
	if (qemu_plugin_tb_vaddr(tb) < 0xffff800000000000ULL || n == 0)
		return;
	b = calloc(1, sizeof(*b) + n * sizeof(b->pc[0]));
	if (!b)
		abort();
	b->n = n;
	for (i = 0; i < n; i++) {
		b->pc[i] = qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, i));
		if (b->pc[i] == marker)
			qemu_plugin_register_vcpu_tb_exec_cb(tb, on_marker, PCPROF_CB_NO_REGS, NULL);
	}
	qemu_plugin_register_vcpu_tb_exec_inline(tb, PCPROF_INLINE_ADD_U64, &b->count, 1);
	pthread_mutex_lock(&lock);
	b->next = blocks;
	blocks = b;
	pthread_mutex_unlock(&lock);
}

static void on_exit_cb(qemu_plugin_id_t id, void *udata)
{
	(void)id;
	(void)udata;
	if (out)
		fclose(out);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
							       const void *info, int argc,
							       char **argv)
{
	int i;

	(void)info;
	for (i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "marker=", 7))
			marker = strtoull(argv[i] + 7, NULL, 16);
		else if (!strncmp(argv[i], "out=", 4))
			out = fopen(argv[i] + 4, "w");
	}
	if (!marker || !out) {
		fprintf(stderr, "pcprof: needs marker=0xADDR and a writable out=PATH\n");
		return -1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
	return 0;
}
