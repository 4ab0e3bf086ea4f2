/* The error log and the access log. Workers never write to a file themselves: they append
 * lines to a bounded in-memory queue under a mutex held for one memcpy, and the log thread
 * swaps the queue out and writes it. A full queue drops lines (counted), so a stalled stdout
 * slows nothing but the log. Error lines wake the log thread at once; access lines only past
 * ACCESS_WAKE bytes, else they wait for its FLUSH_MS period: waking it (a futex call, a
 * context switch and a write) for every request cost more than the request itself. */
#include "sluice/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/file.h"

#define QUEUE_MAX (4u << 20)    /* bytes queued per log before lines are dropped */
#define ACCESS_WAKE (64u << 10) /* access-log bytes that wake the writer early */
#define FLUSH_MS 100            /* the longest an access line waits in the queue */

struct queue {
    char *buf;
    size_t len, cap;
    int fd;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running, stopping, sleeping;
    struct queue q[2]; /* 0: error log (stderr), 1: access log */
    enum sl_log_level level;
    atomic_uint_fast64_t dropped;
} lg = {
    .mu = PTHREAD_MUTEX_INITIALIZER, /* .cv: sl_log_start makes it, on CLOCK_MONOTONIC */
    .q = {{.fd = 2}, {.fd = -1}},
    .level = SL_LOG_INFO,
};

static const char *const level_names[] = {"error", "warning", "info", "debug"};

/* Appends under lg.mu; false when the queue is full. */
static bool queue_put(struct queue *q, const char *line, size_t len)
{
    if (q->len + len + 1 > QUEUE_MAX)
        return false;
    if (q->len + len + 1 > q->cap) {
        size_t cap = q->cap ? q->cap : 64 * 1024;
        char *nb;

        while (cap < q->len + len + 1)
            cap *= 2;
        nb = realloc(q->buf, cap);
        if (!nb)
            return false;
        q->buf = nb;
        q->cap = cap;
    }
    memcpy(q->buf + q->len, line, len);
    q->buf[q->len + len] = '\n';
    q->len += len + 1;
    return true;
}

static void *log_main(void *arg)
{
    char *spare[2] = {NULL, NULL};
    size_t spare_cap[2] = {0, 0};

    (void)arg;
    pthread_mutex_lock(&lg.mu);
    for (;;) {
        while (!lg.stopping && lg.q[0].len == 0 && lg.q[1].len == 0) {
            lg.sleeping = true;
            pthread_cond_wait(&lg.cv, &lg.mu);
            lg.sleeping = false;
        }
        /* Access lines only: let more of them gather for one write. */
        if (!lg.stopping && lg.q[0].len == 0 && lg.q[1].len < ACCESS_WAKE) {
            struct timespec until;

            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += FLUSH_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            lg.sleeping = true;
            while (!lg.stopping && lg.q[0].len == 0 && lg.q[1].len < ACCESS_WAKE &&
                   pthread_cond_timedwait(&lg.cv, &lg.mu, &until) == 0)
                ;
            lg.sleeping = false;
        }
        for (int i = 0; i < 2; i++) {
            struct queue *q = &lg.q[i];
            char *buf = q->buf;
            size_t len = q->len, cap = q->cap;

            if (len == 0)
                continue;
            /* Swap in the spare buffer so workers keep appending while we write. */
            q->buf = spare[i];
            q->cap = spare_cap[i];
            q->len = 0;
            pthread_mutex_unlock(&lg.mu);
            if (q->fd != -1)
                (void)sl_write_all(q->fd, buf, len); /* a failure has nowhere to go */
            pthread_mutex_lock(&lg.mu);
            spare[i] = buf;
            spare_cap[i] = cap;
        }
        if (lg.stopping && lg.q[0].len == 0 && lg.q[1].len == 0)
            break;
    }
    pthread_mutex_unlock(&lg.mu);
    free(spare[0]);
    free(spare[1]);
    return NULL;
}

int sl_log_start(const char *access_path, enum sl_log_level level)
{
    pthread_condattr_t ca;
    int fd = -1;

    if (access_path && !strcmp(access_path, "-"))
        fd = 1;
    else if (access_path && strcmp(access_path, "off") != 0) {
        fd = open(access_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd == -1)
            return -1;
    }
    lg.q[1].fd = fd;
    lg.level = level;
    lg.stopping = false;
    /* The flush period is measured on the monotonic clock: a clock step must not hold the
     * access log back. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lg.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&lg.thread, NULL, log_main, NULL) != 0) {
        if (fd > 2)
            close(fd);
        lg.q[1].fd = -1;
        errno = EAGAIN;
        return -1;
    }
    lg.running = true;
    return 0;
}

void sl_log_stop(void)
{
    if (!lg.running)
        return;
    pthread_mutex_lock(&lg.mu);
    lg.stopping = true;
    pthread_cond_signal(&lg.cv);
    pthread_mutex_unlock(&lg.mu);
    pthread_join(lg.thread, NULL);
    pthread_cond_destroy(&lg.cv);
    lg.running = false;
    if (lg.q[1].fd > 2)
        close(lg.q[1].fd);
    lg.q[1].fd = -1;
    for (int i = 0; i < 2; i++) {
        free(lg.q[i].buf);
        lg.q[i].buf = NULL;
        lg.q[i].len = lg.q[i].cap = 0;
    }
}

static void enqueue(int i, const char *line, size_t len)
{
    bool ok;

    pthread_mutex_lock(&lg.mu);
    ok = queue_put(&lg.q[i], line, len);
    /* An access line wakes the writer only when it is asleep with nothing queued (it then
     * waits FLUSH_MS by itself) or when the queue is long; an error line always. */
    if (ok && lg.sleeping && (i == 0 || lg.q[i].len == len + 1 || lg.q[i].len >= ACCESS_WAKE))
        pthread_cond_signal(&lg.cv);
    pthread_mutex_unlock(&lg.mu);
    if (!ok)
        atomic_fetch_add_explicit(&lg.dropped, 1, memory_order_relaxed);
}

void sl_log(enum sl_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n, m;

    if (level > lg.level)
        return;
    n = snprintf(line, sizeof(line), "sluice: %s: ", level_names[level]);
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += m;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;
    if (!lg.running) {
        line[n] = '\n';
        (void)sl_write_all(2, line, (size_t)n + 1);
        return;
    }
    enqueue(0, line, (size_t)n);
}

bool sl_log_access_on(void)
{
    return lg.running && lg.q[1].fd != -1;
}

void sl_log_access(const char *line, size_t len)
{
    if (sl_log_access_on())
        enqueue(1, line, len);
}

uint64_t sl_log_dropped(void)
{
    return atomic_load_explicit(&lg.dropped, memory_order_relaxed);
}
