/* Shared helpers of the capi-tests harnesses; see harness.h. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void harness_logger_vmessage(xentoollog_logger *logger,
                                    xentoollog_level level, int errnoval,
                                    const char *context, const char *format,
                                    va_list al)
    __attribute__((format(printf, 5, 0)));

static void harness_logger_vmessage(xentoollog_logger *logger,
                                    xentoollog_level level, int errnoval,
                                    const char *context, const char *format,
                                    va_list al)
{
    struct harness_logger *lg = (struct harness_logger *)logger;
    xentoollog_logger *inner = (xentoollog_logger *)lg->inner;

    inner->vmessage(inner, level, errnoval, context, format, al);
}

static void harness_logger_progress(xentoollog_logger *logger,
                                    const char *context,
                                    const char *doing_what, int percent,
                                    unsigned long done, unsigned long total)
{
    struct harness_logger *lg = (struct harness_logger *)logger;
    const char *what = doing_what ? doing_what : "";
    bool new_phase = done == 0 || strncmp(lg->last_what, what,
                                          sizeof(lg->last_what)) != 0;

    (void)percent;
    if (new_phase) {
        snprintf(lg->last_what, sizeof(lg->last_what), "%s", what);
        lg->phases++;
    }
    if (new_phase || done == total || lg->every_step)
        fprintf(stderr, "%s: progress context=%s what=\"%s\" done=%lu total=%lu\n",
                lg->prog, context ? context : "-", what, done, total);
}

static void harness_logger_destroy(xentoollog_logger *logger)
{
    struct harness_logger *lg = (struct harness_logger *)logger;

    xtl_logger_destroy((xentoollog_logger *)lg->inner);
    free(lg);
}

struct harness_logger *harness_logger_create(const char *prog,
                                             xentoollog_level min_level)
{
    struct harness_logger *lg = calloc(1, sizeof(*lg));

    if (!lg) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(HARNESS_EXIT_SETUP);
    }
    lg->inner = xtl_createlogger_stdiostream(stderr, min_level,
                                             XTL_STDIOSTREAM_PROGRESS_NO_CR);
    if (!lg->inner) {
        fprintf(stderr, "%s: cannot create the stdio logger\n", prog);
        exit(HARNESS_EXIT_SETUP);
    }
    lg->vtable.vmessage = harness_logger_vmessage;
    lg->vtable.progress = harness_logger_progress;
    lg->vtable.destroy = harness_logger_destroy;
    lg->prog = prog;
    return lg;
}

bool harness_parse_ulong(const char *prog, const char *what, const char *text,
                         unsigned long max, unsigned long *out)
{
    char *end = NULL;
    unsigned long v;

    if (!text || !*text || text[0] == '-') {
        fprintf(stderr, "%s: %s: expected a non-negative number, got \"%s\"\n",
                prog, what, text ? text : "");
        return false;
    }
    errno = 0;
    v = strtoul(text, &end, 0);
    if (errno || *end || v > max) {
        fprintf(stderr, "%s: %s: \"%s\" is not a number in 0..%lu\n", prog,
                what, text, max);
        return false;
    }
    *out = v;
    return true;
}

int harness_open_stream(const char *prog, const char *spec, int flags)
{
    unsigned long fd;
    int rc;

    if (strncmp(spec, "fd:", 3) == 0) {
        if (!harness_parse_ulong(prog, "stream descriptor", spec + 3, 1u << 20,
                                 &fd))
            return -1;
        if (fcntl((int)fd, F_GETFD) < 0) {
            fprintf(stderr, "%s: descriptor %lu is not open: %s\n", prog, fd,
                    strerror(errno));
            return -1;
        }
        return (int)fd;
    }
    rc = open(spec, flags | O_CLOEXEC, 0644);
    if (rc < 0)
        fprintf(stderr, "%s: cannot open %s: %s\n", prog, spec,
                strerror(errno));
    return rc;
}

xc_interface *harness_open_xc(const char *prog, struct harness_logger *lg)
{
    xc_interface *xch = xc_interface_open((xentoollog_logger *)lg,
                                          (xentoollog_logger *)lg, 0);

    if (!xch)
        fprintf(stderr, "%s: xc_interface_open failed: %s\n", prog,
                strerror(errno));
    return xch;
}

void harness_timestamp(const char *prog, const char *event)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
        fprintf(stderr, "%s: timestamp event=%s monotonic_ns=%llu\n", prog,
                event,
                (unsigned long long)ts.tv_sec * 1000000000ULL +
                    (unsigned long long)ts.tv_nsec);
}
