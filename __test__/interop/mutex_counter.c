// A C process of the mutex tests, written from docs/layout.md alone: it adds 1 to a shared
// counter ROUNDS times under the RobustMutex that shmkit placed in a named segment.
//   mutex_counter NAME MUTEX_OFFSET COUNTER_OFFSET ROUNDS lock|nolock
// Start barrier: it adds 1 to the u32 at COUNTER_OFFSET + 64, then waits for the one at
// COUNTER_OFFSET + 128 to be non-zero, so that all the processes count at the same time.
// It takes part in the lock protocol fully (owner record included) but, to stay short, does
// not check whether a holder died: it only waits in bounded slices.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WAITERS 0x80000000u
#define OWNER_DIED 0x40000000u
#define RECORDED 0x20000000u
#define OWNER_MASK 0x1fffffffu /* all ones: not recoverable */

struct robust_mutex {
  _Atomic uint32_t state;    /* byte 0 */
  _Atomic uint32_t sequence; /* byte 4: bumped by each new owner before the record */
  _Atomic uint32_t pid;      /* byte 8 */
  _Atomic uint32_t tid;      /* byte 12 */
  _Atomic uint32_t start_lo; /* byte 16: field 22 of /proc/<pid>/task/<tid>/stat */
  _Atomic uint32_t start_hi; /* byte 20 */
  uint32_t reserved[2];      /* bytes 24..32 */
};

static uint32_t me_pid, me_tid;
static uint64_t me_start;

static uint64_t start_time(uint32_t pid, uint32_t tid) {
  char path[64], text[1024];
  snprintf(path, sizeof path, "/proc/%u/task/%u/stat", pid, tid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  char *p = strrchr(text, ')'); /* field 2 (the name) may contain anything */
  if (!p) return 0;
  p++;
  char *save = NULL;
  char *field = strtok_r(p, " ", &save); /* field 3 */
  for (int i = 3; field && i < 22; i++) field = strtok_r(NULL, " ", &save);
  return field ? strtoull(field, NULL, 10) : 0;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t expected) {
  struct timespec slice = {0, 20 * 1000 * 1000}; /* a full participant checks the owner after each */
  syscall(SYS_futex, word, FUTEX_WAIT, expected, &slice, NULL, 0); /* no FUTEX_PRIVATE_FLAG */
}

static void futex_wake(_Atomic uint32_t *word, int count) {
  syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

/* 0: acquired, 1: acquired after an owner died, -1: not recoverable. */
static int mutex_lock(struct robust_mutex *m) {
  int slept = 0;
  for (;;) {
    uint32_t w = atomic_load(&m->state);
    uint32_t owner = w & OWNER_MASK;
    if (owner == OWNER_MASK) return -1;
    if (owner == 0) {
      uint32_t mine = me_tid | (w & OWNER_DIED) | (slept ? WAITERS : 0);
      if (!atomic_compare_exchange_strong(&m->state, &w, mine)) continue;
      /* Won: bump the sequence, write the owner record, then say so with RECORDED (unless
         taken over meanwhile). Sequentially consistent, as readers check the sequence. */
      atomic_fetch_add(&m->sequence, 1);
      atomic_store(&m->pid, me_pid);
      atomic_store(&m->tid, me_tid);
      atomic_store(&m->start_lo, (uint32_t)me_start);
      atomic_store(&m->start_hi, (uint32_t)(me_start >> 32));
      uint32_t cur = mine;
      for (;;) {
        if ((cur & OWNER_MASK) != me_tid || (cur & RECORDED)) break; /* taken over: lost */
        if (atomic_compare_exchange_strong(&m->state, &cur, cur | RECORDED)) return (mine & OWNER_DIED) ? 1 : 0;
      }
      continue;
    }
    if (!(w & WAITERS)) {
      if (!atomic_compare_exchange_strong(&m->state, &w, w | WAITERS)) continue;
      w |= WAITERS;
    }
    futex_wait(&m->state, w);
    slept = 1;
  }
}

static int mutex_unlock(struct robust_mutex *m) {
  uint32_t w = atomic_load(&m->state);
  for (;;) {
    if ((w & OWNER_MASK) != me_tid || !(w & RECORDED)) return -1; /* EPERM */
    uint32_t next = (w & OWNER_DIED) ? OWNER_MASK : 0;
    if (atomic_compare_exchange_strong(&m->state, &w, next)) break;
  }
  if (w & OWNER_DIED) futex_wake(&m->state, 1 << 30);
  else if (w & WAITERS) futex_wake(&m->state, 1);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s NAME MUTEX_OFFSET COUNTER_OFFSET ROUNDS lock|nolock\n", argv[0]);
    return 2;
  }
  int fd = shm_open(argv[1], O_RDWR, 0);
  if (fd < 0) return perror("shm_open"), 1;
  struct stat st;
  if (fstat(fd, &st) < 0) return perror("fstat"), 1;
  unsigned char *base = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return perror("mmap"), 1;
  struct robust_mutex *m = (struct robust_mutex *)(base + atol(argv[2]));
  volatile uint32_t *counter = (volatile uint32_t *)(base + atol(argv[3]));
  _Atomic uint32_t *ready = (_Atomic uint32_t *)(base + atol(argv[3]) + 64);
  _Atomic uint32_t *go = (_Atomic uint32_t *)(base + atol(argv[3]) + 128);
  long rounds = atol(argv[4]);
  int locked = strcmp(argv[5], "nolock") != 0;
  me_pid = (uint32_t)getpid();
  me_tid = (uint32_t)syscall(SYS_gettid);
  me_start = start_time(me_pid, me_tid);
  atomic_fetch_add(ready, 1);
  while (atomic_load(go) == 0) {
  }
  for (long i = 0; i < rounds; i++) {
    if (locked && mutex_lock(m) < 0) return fprintf(stderr, "not recoverable\n"), 1;
    uint32_t value = *counter;
    for (volatile int spin = 0; spin < 200; spin++) {
    }
    *counter = value + 1;
    if (locked && mutex_unlock(m) < 0) return fprintf(stderr, "unlock: not the owner\n"), 1;
  }
  puts("done");
  return 0;
}
