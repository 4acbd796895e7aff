/*
 * Zero-downtime upgrade (SIGUSR2, as nginx does): the running ferryd starts its binary again
 * with every listening socket inherited, passed as socket activation passes them (LISTEN_FDS
 * from fd 3, LISTEN_PID the new process), and a pipe in FERRY_UPGRADE_FD on which the new
 * process says it serves. Only then does the old one stop accepting and drain its sessions.
 */
#ifndef FERRY_UPGRADE_H
#define FERRY_UPGRADE_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Fork and exec exe with argv and the environment, fds[0..nfds-1] as fds 3.., and a pipe's
 * write end after them. Returns the child's pid with the pipe's read end (close-on-exec) in
 * *ready_fd, or -1 with the problem in err. Safe in a threaded process: the child only makes
 * async-signal-safe calls before the exec.
 */
pid_t upgrade_spawn(const char *exe, char *const argv[], const int *fds, size_t nfds, int *ready_fd,
                    char *err, size_t errlen);

/*
 * Started by an upgrade: the readiness pipe from FERRY_UPGRADE_FD (removed from the
 * environment), or -1 when there is none.
 */
int upgrade_ready_fd_take(void);

/* Tell the old process that this one serves, and close fd. */
void upgrade_ready(int fd);

#endif
