/* A plain C program, not shmkit: opens named POSIX semaphores by name.
 *   sem_post NAME COUNT [WAIT_NAME]
 * With WAIT_NAME, first waits on that semaphore (sem_wait); then posts NAME COUNT times. */
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s NAME COUNT [WAIT_NAME]\n", argv[0]);
    return 2;
  }
  if (argc > 3) {
    sem_t *ping = sem_open(argv[3], 0);
    if (ping == SEM_FAILED) {
      perror("sem_open (wait)");
      return 1;
    }
    while (sem_wait(ping) != 0) {
      if (errno != EINTR) {
        perror("sem_wait");
        return 1;
      }
    }
    sem_close(ping);
  }
  sem_t *sem = sem_open(argv[1], 0);
  if (sem == SEM_FAILED) {
    perror("sem_open");
    return 1;
  }
  for (int i = 0; i < atoi(argv[2]); i++) {
    if (sem_post(sem) != 0) {
      perror("sem_post");
      return 1;
    }
  }
  sem_close(sem);
  return 0;
}
