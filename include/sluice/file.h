/* Files written whole: a reader (or the next start after a crash) sees the old file or the
 * new one, never a part. Used for the API sync's cache and the emulator's state. */
#ifndef SLUICE_FILE_H
#define SLUICE_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all <n> bytes at <p> to <fd>, retrying on EINTR and short writes. 0, or -1 with
 * errno set. */
int sl_write_all(int fd, const void *p, size_t n);

/* Replaces <path> with the <n> bytes at <p> (file mode <mode>): <path>.tmp beside it,
 * fsync, rename over <path>, fsync of the directory. 0, or -1 with errno set and *<step>
 * naming what failed ("create", "write", "rename", "sync the directory of"); <path> is then
 * left as it was. One writer per <path> at a time. */
int sl_write_file_atomic(const char *path, const void *p, size_t n, mode_t mode,
                         const char **step);

#endif
