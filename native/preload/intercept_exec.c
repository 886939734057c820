/*
 * exec family and process creation: execve, execv, execvp, execvpe, execl, execlp,
 * execle, posix_spawn, posix_spawnp, vfork. A Copper program is materialized through
 * OPEN and its local (mode-preserving) copy is executed with argv unchanged. PATH is
 * searched here only when one of its entries is under the prefix. vfork() becomes
 * fork(): a vfork child must not run shim code that locks, allocates or talks, and a
 * fork is a POSIX-legal vfork. Return/errno contract: that of the wrapped function
 * (posix_spawn* return an error number and leave errno alone).
 */
#include "shim.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

extern char **environ;

/* Local path to execute for a Copper path. Returns 0, a positive errno, or <0 (use buf
   = the real path). */
static int exec_target(const char *path, char *buf, int *materialized)
{
    *materialized = 0;
    char real[COPPER_MAX_PATH];
    int r = copper_strip(path, real);
    if (r)
        return r;
    if ((r = copper_trailing_dir(path, real)) != 0)
        return r < 0 ? -r : EACCES; /* "dir/" is a directory: not executable */
    copper_in_shim++;
    int saved = errno;
    uint32_t kind = 0;
    copper_stat st;
    int s = copper_get_open(real, &kind, buf, &st);
    errno = saved;
    copper_in_shim--;
    if (s == 0 && kind == COPPER_OPEN_DIR)
        return EACCES;
    if (s < 0)
        strcpy(buf, real);
    else if (s == 0)
        *materialized = 1;
    return s > 0 ? s : 0;
}

static int copper_execve_depth(const char *path, char *const argv[], char *const envp[], int depth);

/* A "#!" script is started the way the kernel would, but with the Copper path as the
   script argument (so $0 and sys.argv[0] name the Copper path, and the preloaded
   interpreter reads the script through Copper). Returns -1 with errno set when it is a
   script that could not be started, 0 when it is not a script. */
static int exec_script(const char *path, const char *local, char *const argv[], char *const envp[], int depth)
{
    int fd = REAL(open)(local, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    char head[256];
    ssize_t n = read(fd, head, sizeof head - 1);
    close(fd);
    if (n < 3 || head[0] != '#' || head[1] != '!')
        return 0;
    head[n] = '\0';
    char *end = strchr(head, '\n');
    if (end == NULL)
        return 0; /* longer than we parse: let the kernel handle the local copy */
    *end = '\0';
    char *interp = head + 2;
    while (*interp == ' ' || *interp == '\t')
        interp++;
    char *arg = interp + strcspn(interp, " \t");
    if (*arg) {
        *arg++ = '\0';
        while (*arg == ' ' || *arg == '\t')
            arg++;
        size_t len = strlen(arg);
        while (len > 0 && (arg[len - 1] == ' ' || arg[len - 1] == '\t'))
            arg[--len] = '\0';
    }
    if (*interp == '\0')
        return 0;
    size_t argc = 0;
    while (argv && argv[argc])
        argc++;
    char *nargv[argc + 4];
    size_t k = 0;
    nargv[k++] = interp;
    if (*arg)
        nargv[k++] = arg;
    nargv[k++] = (char *)path;
    for (size_t i = 1; i < argc; i++)
        nargv[k++] = argv[i];
    nargv[k] = NULL;
    copper_execve_depth(interp, nargv, envp, depth + 1);
    return -1;
}

static int copper_execve_depth(const char *path, char *const argv[], char *const envp[], int depth)
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(execve)(path, argv, envp);
    }
    char local[COPPER_MAX_PATH];
    int materialized;
    int s = exec_target(path, local, &materialized);
    if (s > 0) {
        errno = s;
        return -1;
    }
    if (materialized && depth < 4 && exec_script(path, local, argv, envp, depth) != 0)
        return -1;
    return REAL(execve)(local, argv, envp);
}

static int copper_execve(const char *path, char *const argv[], char *const envp[])
{
    return copper_execve_depth(path, argv, envp, 0);
}

COPPER_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    return copper_execve(path, argv, envp);
}

COPPER_EXPORT int execv(const char *path, char *const argv[])
{
    return copper_execve(path, argv, environ);
}

static int path_has_copper(const char *pathvar)
{
    const char *p = pathvar;
    while (p) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char dir[COPPER_MAX_PATH];
        if (n < sizeof dir) {
            memcpy(dir, p, n);
            dir[n] = '\0';
            if (copper_under_prefix(dir))
                return 1;
        }
        p = e ? e + 1 : NULL;
    }
    return 0;
}

/* Is the Copper candidate a regular file with an execute bit? 0 or errno. */
static int copper_executable(const char *cand)
{
    char real[COPPER_MAX_PATH];
    if (copper_strip(cand, real) != 0)
        return ENAMETOOLONG;
    copper_in_shim++;
    int saved = errno;
    copper_stat st;
    int s = copper_get_stat(COPPER_OP_STAT, real, &st);
    errno = saved;
    copper_in_shim--;
    if (s < 0) {
        struct stat rs;
        if (REAL(stat)(real, &rs) != 0)
            return errno;
        return S_ISREG(rs.st_mode) && (rs.st_mode & 0111) ? 0 : EACCES;
    }
    if (s > 0)
        return s;
    return S_ISREG(st.mode) && (st.mode & 0111) ? 0 : EACCES;
}

static void exec_shell(const char *cand, char *const argv[], char *const envp[])
{
    size_t n = 0;
    while (argv[n])
        n++;
    char *nargv[n + 2];
    nargv[0] = (char *)"/bin/sh";
    nargv[1] = (char *)cand;
    for (size_t i = 1; i <= n; i++)
        nargv[i + 1] = argv[i];
    if (n == 0)
        nargv[2] = NULL;
    REAL(execve)("/bin/sh", nargv, envp);
}

/* PATH search step shared by execvpe and posix_spawnp: writes the candidate for file in
   the next PATH entry into cand and advances *p. Returns 1 with a candidate, 0 for an
   entry too long to use (skip it), -1 when PATH is exhausted. */
static int next_path_candidate(const char **p, const char *file, char cand[COPPER_MAX_PATH])
{
    if (*p == NULL)
        return -1;
    const char *e = strchr(*p, ':');
    size_t n = e ? (size_t)(e - *p) : strlen(*p);
    int ok = n + 1 + strlen(file) < COPPER_MAX_PATH;
    if (ok && n == 0)
        snprintf(cand, COPPER_MAX_PATH, "%s", file);
    else if (ok)
        snprintf(cand, COPPER_MAX_PATH, "%.*s/%s", (int)n, *p, file);
    *p = e ? e + 1 : NULL;
    return ok;
}

static int copper_execvpe(const char *file, char *const argv[], char *const envp[])
{
    const char *pathvar = getenv("PATH");
    if (file == NULL || *file == '\0' || strchr(file, '/') != NULL ||
        !path_has_copper(pathvar ? pathvar : ""))
        return REAL(execvpe)(file, argv, envp);
    int got_eacces = 0;
    const char *p = pathvar;
    char cand[COPPER_MAX_PATH];
    int more;
    while ((more = next_path_candidate(&p, file, cand)) >= 0) {
        if (more) {
            if (copper_under_prefix(cand)) {
                int s = copper_executable(cand);
                if (s == 0) {
                    copper_execve(cand, argv, envp);
                    if (errno == ENOEXEC)
                        exec_shell(cand, argv, envp);
                    return -1;
                }
                if (s == EACCES)
                    got_eacces = 1;
            } else {
                REAL(execve)(cand, argv, envp);
                if (errno == ENOEXEC) {
                    exec_shell(cand, argv, envp);
                    return -1;
                }
                if (errno == EACCES)
                    got_eacces = 1;
                else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE &&
                         errno != ENODEV && errno != ETIMEDOUT)
                    return -1;
            }
        }
    }
    errno = got_eacces ? EACCES : ENOENT;
    return -1;
}

COPPER_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    copper_check_init();
    return copper_execvpe(file, argv, envp);
}

COPPER_EXPORT int execvp(const char *file, char *const argv[])
{
    copper_check_init();
    return copper_execvpe(file, argv, environ);
}

/* Collect execl-style arguments into a NULL-terminated array on the stack. */
#define COLLECT_ARGS(arg, argv, envp_out)                      \
    size_t argc_ = 1;                                          \
    va_list ap_;                                               \
    va_start(ap_, arg);                                        \
    while (va_arg(ap_, char *) != NULL)                        \
        argc_++;                                               \
    va_end(ap_);                                               \
    char *argv[argc_ + 1];                                     \
    argv[0] = (char *)arg;                                     \
    va_start(ap_, arg);                                        \
    for (size_t i_ = 1; i_ <= argc_; i_++)                     \
        argv[i_] = va_arg(ap_, char *);                        \
    envp_out = va_arg(ap_, char **);                           \
    va_end(ap_);

COPPER_EXPORT int execl(const char *path, const char *arg, ...)
{
    char **envp;
    COLLECT_ARGS(arg, argv, envp);
    (void)envp;
    return copper_execve(path, argv, environ);
}

COPPER_EXPORT int execle(const char *path, const char *arg, ...)
{
    char **envp;
    COLLECT_ARGS(arg, argv, envp);
    return copper_execve(path, argv, envp);
}

COPPER_EXPORT int execlp(const char *file, const char *arg, ...)
{
    char **envp;
    COLLECT_ARGS(arg, argv, envp);
    (void)envp;
    copper_check_init();
    return copper_execvpe(file, argv, environ);
}

COPPER_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                              const posix_spawnattr_t *attr, char *const argv[],
                              char *const envp[])
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(posix_spawn)(pid, path, fa, attr, argv, envp);
    }
    char local[COPPER_MAX_PATH];
    int materialized;
    int s = exec_target(path, local, &materialized);
    if (s > 0)
        return s;
    /* A spawned "#!" script sees the node-local path as its $0 (no exec hook in the child). */
    return REAL(posix_spawn)(pid, local, fa, attr, argv, envp);
}

COPPER_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                               const posix_spawnattr_t *attr, char *const argv[],
                               char *const envp[])
{
    copper_check_init();
    if (file != NULL && strchr(file, '/') != NULL)
        return posix_spawn(pid, file, fa, attr, argv, envp);
    const char *pathvar = getenv("PATH");
    if (file == NULL || *file == '\0' || copper_in_shim || !path_has_copper(pathvar ? pathvar : ""))
        return REAL(posix_spawnp)(pid, file, fa, attr, argv, envp);
    int result = ENOENT;
    const char *p = pathvar;
    char cand[COPPER_MAX_PATH];
    int more;
    while ((more = next_path_candidate(&p, file, cand)) >= 0) {
        if (more) {
            int s;
            if (copper_under_prefix(cand)) {
                s = copper_executable(cand);
            } else {
                struct stat rs;
                s = REAL(stat)(cand, &rs) != 0 ? errno
                    : (S_ISREG(rs.st_mode) && REAL(access)(cand, X_OK) == 0) ? 0 : EACCES;
            }
            if (s == 0)
                return posix_spawn(pid, cand, fa, attr, argv, envp);
            if (s == EACCES)
                result = EACCES;
        }
    }
    return result;
}

COPPER_EXPORT pid_t vfork(void)
{
    return REAL(fork)();
}

COPPER_EXPORT pid_t __vfork(void)
{
    return REAL(fork)();
}
