/* A plain C program that takes part in shmkit's protocols (docs/layout.md) on a named
 * segment, without shmkit:
 *   word_peer SEGMENT ROUNDS lock|sem-region|sem-named|none [SEMAPHORE]
 * Layout of the segment: byte 0 a counter (int32), byte 64 a lock word, byte 128 a start
 * barrier (each process adds 1, then all wait until it reads 4), byte 256 an in-region
 * semaphore. Each round adds 1 to the counter with a plain read and write, under:
 *   lock       a lock on wait/notify: 0 free, 1 locked, 2 locked with waiters (futex, shared)
 *   sem-region glibc's sem_wait/sem_post on the in-region semaphore (same bytes as shmkit's)
 *   sem-named  glibc's sem_wait/sem_post on the named semaphore SEMAPHORE
 *   none       nothing (to show the count is then wrong) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static long futex(uint32_t *word, int op, uint32_t val) {
  /* No FUTEX_PRIVATE_FLAG: other processes map the same word. */
  return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

static void lock(uint32_t *w) {
  uint32_t c = 0;
  if (__atomic_compare_exchange_n(w, &c, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
  if (c != 2) c = __atomic_exchange_n(w, 2, __ATOMIC_ACQUIRE);
  while (c != 0) {
    futex(w, FUTEX_WAIT, 2);
    c = __atomic_exchange_n(w, 2, __ATOMIC_ACQUIRE);
  }
}

static void unlock(uint32_t *w) {
  if (__atomic_fetch_sub(w, 1, __ATOMIC_RELEASE) != 1) {
    __atomic_store_n(w, 0, __ATOMIC_RELEASE);
    futex(w, FUTEX_WAKE, 1);
  }
}

static void take(sem_t *s) {
  while (sem_wait(s) != 0) {
    if (errno != EINTR) {
      perror("sem_wait");
      exit(1);
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s SEGMENT ROUNDS lock|sem-region|sem-named|none [SEMAPHORE]\n", argv[0]);
    return 2;
  }
  int fd = shm_open(argv[1], O_RDWR, 0);
  if (fd < 0) {
    perror("shm_open");
    return 1;
  }
  char *base = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  long rounds = atol(argv[2]);
  const char *mode = argv[3];
  volatile int32_t *counter = (volatile int32_t *)base;
  uint32_t *word = (uint32_t *)(base + 64);
  uint32_t *barrier = (uint32_t *)(base + 128);
  sem_t *sem = (sem_t *)(base + 256);
  if (strcmp(mode, "sem-named") == 0) {
    sem = sem_open(argv[4], 0);
    if (sem == SEM_FAILED) {
      perror("sem_open");
      return 1;
    }
  }
  __atomic_fetch_add(barrier, 1, __ATOMIC_SEQ_CST);
  futex(barrier, FUTEX_WAKE, INT32_MAX);
  for (uint32_t b; (b = __atomic_load_n(barrier, __ATOMIC_SEQ_CST)) < 4;) futex(barrier, FUTEX_WAIT, b);
  for (long i = 0; i < rounds; i++) {
    if (strcmp(mode, "lock") == 0) lock(word);
    else if (strncmp(mode, "sem-", 4) == 0) take(sem);
    *counter = *counter + 1;
    if (strcmp(mode, "lock") == 0) unlock(word);
    else if (strncmp(mode, "sem-", 4) == 0) sem_post(sem);
  }
  puts("done");
  return 0;
}
