/* Text for the shared enums of common.h, times as text, seeds. */
#include "sluice/common.h"

#include <sys/random.h>
#include <unistd.h>

const char *sl_err_str(enum sl_err e)
{
    switch (e) {
    case SL_ERR_NONE:
        return "none";
    case SL_ERR_CLIENT_CLOSED:
        return "client closed";
    case SL_ERR_TARGET_CLOSED:
        return "target closed";
    case SL_ERR_CLIENT_RESET:
        return "client reset";
    case SL_ERR_TARGET_RESET:
        return "target reset";
    case SL_ERR_IDLE_TIMEOUT:
        return "idle timeout";
    case SL_ERR_CONNECT_REFUSED:
        return "target refused the connection";
    case SL_ERR_CONNECT_TIMEOUT:
        return "connecting to the target timed out";
    case SL_ERR_CONNECT_ERROR:
        return "could not connect to the target";
    case SL_ERR_NO_TARGET:
        return "no target available";
    case SL_ERR_TARGET_TIMEOUT:
        return "the target did not answer in time";
    case SL_ERR_BAD_RESPONSE:
        return "invalid response from the target";
    case SL_ERR_BAD_REQUEST:
        return "bad request";
    case SL_ERR_SHUTDOWN:
        return "shutting down";
    case SL_ERR_RESOURCES:
        return "out of resources";
    case SL_ERR_TARGET_DOWN:
        return "target marked down by its health check";
    case SL_ERR_TARGET_REMOVED:
        return "target removed from the config (drainTimeout passed)";
    case SL_ERR_COUNT:
        break;
    }
    return "unknown";
}

char *sl_iso_ms(uint64_t ms, char *buf)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&s, &tm);
    strftime(buf, SL_ISO_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + 19, SL_ISO_LEN - 19, ".%03uZ", (unsigned)(ms % 1000));
    return buf;
}

uint64_t sl_seed64(uint64_t salt)
{
    uint64_t seed;

    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
        seed = sl_clock_us(CLOCK_REALTIME) ^ (uint64_t)getpid() << 32 ^ salt;
    return seed ? seed : 0x9e3779b97f4a7c15ULL;
}
