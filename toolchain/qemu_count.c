/* edgecnn's QEMU TCG plugin: the guest instructions executed between region marks.
 *
 * Written by hand: QEMU ships no plugin that counts per region, and Debian's qemu-user
 * ships no plugin header, so the few declarations of the plugin API (version 1, QEMU
 * 7.x) that this file uses are written out below. Built at provisioning with the
 * system C compiler (toolchain/counting.py) and loaded by the dynamic qemu-aarch64:
 *     qemu-aarch64 -plugin qemu_count.so ...
 *
 * The guest marks a region with a system call that fails harmlessly on any Linux:
 * lseek(MARK_FD, 1, 0) starts one and lseek(MARK_FD, 2, 0) ends it, where MARK_FD, a
 * descriptor that cannot exist, is runtime/harness.py's, given to the compiler (-D). Every translation block
 * counts its executions inline, the one thing done per execution (a second counter of all
 * instructions made an emulated `import torch` 2.6 s slower); at a mark the counts are
 * read and a region's instructions are its blocks' executions times their lengths, so a
 * region's number is exact and costs nothing outside the marks. At exit, written to $EDGECNN_COUNT_OUT:
 *     region INSNS                       one line per region, in order
 *     tb EXECS VADDR WORD WORD ...       each block executed inside the regions: its
 *                                        executions summed over them, and its
 *                                        instructions as little-endian 32-bit words
 * A block translated twice appears twice; the reader adds them up. */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* read by nothing here */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*syscall_cb)(qemu_plugin_id_t, unsigned int, int64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                           uint64_t, uint64_t, uint64_t, uint64_t);
typedef void (*atexit_cb)(qemu_plugin_id_t, void *);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op, void *, uint64_t);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t, syscall_cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, atexit_cb, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

#ifndef MARK_FD
#error "build with -DMARK_FD=<runtime/harness.py's MARK_FD>"
#endif
#define SYS_LSEEK_AARCH64 62
#define MAX_REGIONS 64

typedef struct {
    uint64_t execs;   /* bumped inline by the translated code */
    uint64_t at_start, in_regions; /* a block new inside a region starts from 0 */
    uint64_t vaddr;
    size_t n;
    uint32_t *words;
} Block;

static Block **blocks;
static size_t n_blocks, cap_blocks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* blocks grows while a mark reads it */
static bool failed; /* out of memory: nothing is written rather than a wrong count */
static uint64_t regions[MAX_REGIONS];
static int n_regions;
static bool active;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    Block *b = calloc(1, sizeof *b);
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint32_t *words = calloc(n ? n : 1, sizeof *words);
    if (!b || !words) { free(b); free(words); failed = true; return; }
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->n = n;
    b->words = words;
    for (size_t i = 0; i < n; i++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (qemu_plugin_insn_size(insn) == 4)
            memcpy(&b->words[i], qemu_plugin_insn_data(insn), 4);
    }
    pthread_mutex_lock(&lock);
    if (n_blocks == cap_blocks) {
        size_t cap = cap_blocks ? 2 * cap_blocks : 1 << 14;
        Block **grown = realloc(blocks, cap * sizeof *blocks);
        if (!grown) { failed = true; pthread_mutex_unlock(&lock); free(words); free(b); return; }
        blocks = grown;
        cap_blocks = cap;
    }
    blocks[n_blocks++] = b;
    pthread_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->execs, 1);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
    if (num != SYS_LSEEK_AARCH64 || (int32_t)a1 != MARK_FD) return;
    pthread_mutex_lock(&lock);
    if (a2 == 1 && !active && n_regions < MAX_REGIONS) {
        active = true;
        for (size_t i = 0; i < n_blocks; i++) blocks[i]->at_start = blocks[i]->execs;
    } else if (a2 == 2 && active) {
        uint64_t insns = 0;
        active = false;
        for (size_t i = 0; i < n_blocks; i++) {
            uint64_t here = blocks[i]->execs - blocks[i]->at_start;
            blocks[i]->in_regions += here;
            insns += here * blocks[i]->n;
        }
        regions[n_regions++] = insns;
    }
    pthread_mutex_unlock(&lock);
}

static void write_counts(qemu_plugin_id_t id, void *unused) {
    /* only the process that counted writes: a child it started, which also runs this
       plugin, must not replace the file */
    const char *path = getenv("EDGECNN_COUNT_OUT");
    if (!path || !n_regions || failed) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    for (int r = 0; r < n_regions; r++) fprintf(f, "region %" PRIu64 "\n", regions[r]);
    for (size_t i = 0; i < n_blocks; i++) {
        const Block *b = blocks[i];
        if (!b->in_regions) continue;
        fprintf(f, "tb %" PRIu64 " %" PRIx64, b->in_regions, b->vaddr);
        for (size_t k = 0; k < b->n; k++) fprintf(f, " %08" PRIx32, b->words[k]);
        fputc('\n', f);
    }
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
