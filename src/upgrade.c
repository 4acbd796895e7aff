/* Starting the new binary for an upgrade, and the new process's side (see upgrade.h). */
#include "config.h"

#include "ferry/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UPGRADE_ENV "FERRY_UPGRADE_FD"

extern char **environ;

/* Whether the environment entry e sets one of the variables the new process gets from us. */
static bool ours(const char *e)
{
    static const char *const names[] = {
        "LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=", "WATCHDOG_PID=", UPGRADE_ENV "="};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strncmp(e, names[i], strlen(names[i])) == 0)
            return true;
    }
    return false;
}

/*
 * In the child, before the exec: only async-signal-safe calls. The sockets (and the pipe) are
 * first copied above every target number, then put in place with dup2, which also clears
 * close-on-exec on the targets; everything above them is closed.
 */
/* Append the calling process's pid in decimal to var at position at (async-signal-safe). */
static void put_pid(char *var, size_t at)
{
    char digits[24];
    size_t len = 0;
    pid_t pid = getpid();

    do {
        digits[len++] = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid > 0);
    while (len > 0)
        var[at++] = digits[--len];
    var[at] = '\0';
}

static void exec_child(const char *exe, char *const argv[], char **envp, char *pid_var,
                       char *watchdog_var, const int *fds, size_t nfds, int ready_w, int *high)
{
    int base = (int)(3 + nfds + 1);
    sigset_t none;

    put_pid(pid_var, sizeof("LISTEN_PID=") - 1);
    if (watchdog_var != NULL)
        put_pid(watchdog_var, sizeof("WATCHDOG_PID=") - 1);
    for (size_t i = 0; i < nfds; i++) {
        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, base);
        if (high[i] < 0)
            _exit(126);
    }
    high[nfds] = fcntl(ready_w, F_DUPFD_CLOEXEC, base);
    if (high[nfds] < 0)
        _exit(126);
    for (size_t i = 0; i <= nfds; i++) {
        if (dup2(high[i], (int)(3 + i)) < 0)
            _exit(126);
    }
#ifdef SYS_close_range
    syscall(SYS_close_range, (unsigned)base, ~0U, 0);
#endif
    /* The new process sets up its own signals: start it with none blocked. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(exe, argv, envp);
    _exit(127);
}

pid_t upgrade_spawn(const char *exe, char *const argv[], const int *fds, size_t nfds, int *ready_fd,
                    char *err, size_t errlen)
{
    char fds_var[32], ready_var[48], pid_var[32] = "LISTEN_PID=";
    char watchdog_var[32] = "WATCHDOG_PID=";
    bool watchdog = false;
    size_t nenv = 0, k = 0;
    char **envp;
    int *high, pipefd[2], saved;
    pid_t pid;

    for (char **e = environ; *e != NULL; e++)
        nenv++;
    envp = calloc(nenv + 5, sizeof(*envp));
    high = calloc(nfds + 1, sizeof(*high));
    if (envp == NULL || high == NULL) {
        free(envp);
        free(high);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (char **e = environ; *e != NULL; e++) {
        if (!ours(*e))
            envp[k++] = *e;
        /* systemd's watchdog is for the main process: the new one becomes it. */
        watchdog = watchdog || strncmp(*e, "WATCHDOG_PID=", 13) == 0;
    }
    snprintf(fds_var, sizeof(fds_var), "LISTEN_FDS=%zu", nfds);
    snprintf(ready_var, sizeof(ready_var), UPGRADE_ENV "=%zu", 3 + nfds);
    envp[k++] = fds_var;
    envp[k++] = ready_var;
    envp[k++] = pid_var; /* the child writes its pid in */
    if (watchdog)
        envp[k++] = watchdog_var; /* and here */
    envp[k] = NULL;
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        free(envp);
        free(high);
        return -1;
    }
    pid = fork();
    if (pid == 0)
        exec_child(exe, argv, envp, pid_var, watchdog ? watchdog_var : NULL, fds, nfds, pipefd[1],
                   high);
    saved = errno;
    close(pipefd[1]);
    free(envp);
    free(high);
    if (pid < 0) {
        close(pipefd[0]);
        snprintf(err, errlen, "fork: %s", strerror(saved));
        return -1;
    }
    *ready_fd = pipefd[0];
    return pid;
}

int upgrade_ready_fd_take(void)
{
    const char *v = getenv(UPGRADE_ENV);
    struct stat st;
    long fd = -1;
    char *end;

    if (v != NULL) {
        errno = 0;
        fd = strtol(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || fd < 3 || fd > 1 << 20 ||
            fstat((int)fd, &st) < 0 || !S_ISFIFO(st.st_mode))
            fd = -1;
        else
            fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    }
    unsetenv(UPGRADE_ENV);
    return (int)fd;
}

void upgrade_ready(int fd)
{
    ssize_t r;

    do
        r = write(fd, "1", 1);
    while (r < 0 && errno == EINTR);
    close(fd);
}
