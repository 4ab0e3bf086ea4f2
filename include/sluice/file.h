/* Files read whole, and files written whole: a reader (or the next start after a crash) sees
 * the old file or the new one, never a part. Used for config files, the API sync's cache,
 * the emulator's state and explain's request. */
#ifndef SLUICE_FILE_H
#define SLUICE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* Reads <f> to its end, or its first <max> bytes: a malloc'd buffer (free it) of *<len>
 * bytes, *<more> telling whether bytes past <max> were left unread. NULL on a read error,
 * with errno set. Out of memory aborts. */
char *sl_read_stream(FILE *f, size_t max, size_t *len, bool *more);

/* The directory part of <path>, malloc'd (free it): "." when it has none, "/" for "/x". Out of
 * memory aborts. */
char *sl_dir_of(const char *path);

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
