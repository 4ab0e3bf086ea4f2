/* Files written whole (see file.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/file.h"

char *sl_read_stream(FILE *f, size_t max, size_t *len, bool *more)
{
    size_t cap = 0, n;
    char *buf = NULL;

    *len = 0;
    *more = false;
    for (;;) {
        if (*len == cap) {
            if (cap >= max) {
                *more = getc(f) != EOF;
                break;
            }
            cap = cap ? 2 * cap : 65536;
            cap = cap < max ? cap : max;
            if (!(buf = realloc(buf, cap ? cap : 1)))
                abort();
        }
        n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        int e = errno;

        free(buf);
        errno = e;
        return NULL;
    }
    return buf;
}

char *sl_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = strdup(slash ? path : ".");

    if (!dir)
        abort();
    if (slash)
        dir[slash == path ? 1 : slash - path] = '\0'; /* "/x" keeps its "/" */
    return dir;
}

int sl_write_all(int fd, const void *p, size_t n)
{
    const char *b = p;

    while (n > 0) {
        ssize_t w = write(fd, b, n);

        if (w == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int sl_write_file_atomic(const char *path, const void *p, size_t n, mode_t mode,
                         const char **step)
{
    char tmp[PATH_MAX], *dir;
    int fd, e;

    /* One writer per file (the emulator its state, a sync its cache): a fixed temp name, so a
     * crash leaves at most one stale temp file, overwritten by the next write. */
    *step = "create";
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return errno = ENAMETOOLONG, -1;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd == -1)
        return -1;
    *step = "write";
    if (fchmod(fd, mode) == -1 || sl_write_all(fd, p, n) == -1 || fsync(fd) == -1) {
        e = errno;
        close(fd);
        unlink(tmp);
        return errno = e, -1;
    }
    if (close(fd) == -1) {
        e = errno;
        unlink(tmp);
        return errno = e, -1;
    }
    *step = "rename";
    if (rename(tmp, path) == -1) {
        e = errno;
        unlink(tmp);
        return errno = e, -1;
    }
    /* The rename is durable only once the directory is. */
    *step = "sync the directory of";
    dir = sl_dir_of(path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd == -1 || fsync(fd) == -1) {
        e = errno;
        if (fd != -1)
            close(fd);
        return errno = e, -1;
    }
    close(fd);
    return 0;
}
