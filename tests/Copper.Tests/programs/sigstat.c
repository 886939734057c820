/*
 * stat() of a Copper path from a signal handler, while the main loop keeps the shim busy
 * with requests to the agent: many signals land inside the shim itself. Prints the number
 * of handler calls and of failed stats.
 * usage: sigstat COPPER_FILE COPPER_PREFIX SECONDS
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t handled, failed;
static const char *target;

static void on_alarm(int sig)
{
    (void)sig;
    int saved = errno;
    struct stat st;
    if (stat(target, &st) != 0 || !S_ISREG(st.st_mode))
        failed++;
    handled++;
    errno = saved;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    target = argv[1];
    double seconds = atof(argv[3]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char path[4096];
    for (long i = 0;; i++) {
        /* A new missing directory each time: the shim asks the agent every time. */
        snprintf(path, sizeof path, "%s/copper-sigstat-missing-%ld/x", argv[2], i);
        struct stat st;
        stat(path, &st);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
            break;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("%d %d\n", (int)handled, (int)failed);
    return 0;
}
