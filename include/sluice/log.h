/* Logging: the error log (stderr, one line per event, level-filtered) and the access log (one
 * JSON line per request and per tunnel). Neither blocks a worker: lines are queued and a log
 * thread writes them; when the queue is full, lines are dropped and counted. */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/common.h"

enum sl_log_level {
    SL_LOG_ERR = 0,
    SL_LOG_WARN,
    SL_LOG_INFO,
    SL_LOG_DEBUG,
};

#ifdef SL_DEBUG_LOG
#define SL_DEBUG(...) sl_log(SL_LOG_DEBUG, __VA_ARGS__)
#else
#define SL_DEBUG(...) ((void)0)
#endif

/* Starts the log thread. <access_path>: NULL = no access log, "-" = stdout, else a file opened
 * for appending. Returns 0, or -1 with errno set (the file could not be opened). */
int sl_log_start(const char *access_path, enum sl_log_level level);
/* Flushes every queued line and stops the log thread. */
void sl_log_stop(void);
/* One error-log line "sluice: <level>: <message>". Before sl_log_start, written directly. */
void sl_log(enum sl_log_level level, const char *fmt, ...) SL_PRINTF(2, 3);
/* Queues one access-log line (<line> without its newline). Never blocks. */
void sl_log_access(const char *line, size_t len);
/* Whether access lines go anywhere ("accessLog": "off" sends them nowhere): callers skip
 * building them when not. */
bool sl_log_access_on(void);
/* Lines dropped because the queue was full. */
uint64_t sl_log_dropped(void);

#endif
