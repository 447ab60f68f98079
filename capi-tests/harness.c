/* Shared helpers of the capi-tests harnesses; see harness.h. */
#include "harness.h"

#include <dirent.h>
#include <dlfcn.h>
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

/* Descriptors open in this process, less the one opendir() uses. */
int harness_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* The sum of xensim_shim_live_mappings over the simulated libraries that
 * are loaded, or -1 when none exports it (Xen's real libraries). */
static long shim_live_mappings(void)
{
    static const char *const libs[] = { "libxenctrl.so.4.17",
                                        "libxenforeignmemory.so.1" };
    long total = -1;
    size_t i;

    for (i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
        void *h = dlopen(libs[i], RTLD_LAZY | RTLD_NOLOAD);
        size_t (*live)(void);

        if (!h)
            continue;
        /* A library's own symbol: dlsym on its handle searches it first. */
        *(void **)&live = dlsym(h, "xensim_shim_live_mappings");
        if (live)
            total = (total < 0 ? 0 : total) + (long)live();
        dlclose(h);
    }
    return total;
}

/* Lines of /proc/self/maps that map a guest's memory ("mem") or grant
 * ("grant") file of the simulated host, -1 without XENSIM_HOST. */
static long guest_maps(void)
{
    const char *host = getenv("XENSIM_HOST");
    char line[4096];
    long n = 0;
    FILE *f;

    if (!host || !*host)
        return -1;
    f = fopen("/proc/self/maps", "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        char *path = strchr(line, '/');
        char *base;

        if (!path || strncmp(path, host, strlen(host)) != 0)
            continue;
        path[strcspn(path, "\n")] = 0;
        /* A file unlinked since (its domain destroyed) reads "... (deleted)". */
        base = strrchr(path, '/') + 1;
        if (!strncmp(base, "mem", 3) || !strncmp(base, "grant", 5)) {
            char c = base[base[0] == 'm' ? 3 : 5];
            if (c == 0 || c == ' ')
                n++;
        }
    }
    fclose(f);
    return n;
}

static void trace_marker(const char *prog, const char *what)
{
    const char *path = getenv("XENSIM_FAULT_TRACE");
    char line[128];
    int fd, len;

    if (!path || !*path)
        return;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    len = snprintf(line, sizeof(line), "# %s call %s\n", prog, what);
    if (write(fd, line, (size_t)len) != len)
        fprintf(stderr, "%s: cannot mark the fault trace\n", prog);
    close(fd);
}

void harness_report_start(struct harness_report *r)
{
    const char *on = getenv("XG_HARNESS_REPORT");

    r->enabled = on && !strcmp(on, "1");
    if (r->enabled)
        r->fds_start = harness_count_fds();
}

void harness_report_call(const char *prog, const struct harness_report *r)
{
    if (r->enabled)
        trace_marker(prog, "begins");
}

void harness_report_returned(const char *prog, struct harness_report *r)
{
    if (!r->enabled)
        return;
    trace_marker(prog, "ends");
    r->live_mappings = shim_live_mappings();
    r->guest_maps = guest_maps();
}

void harness_report_finish(const char *prog, const struct harness_report *r)
{
    char lbuf[24] = "-", mbuf[24] = "-";

    if (!r->enabled)
        return;
    if (r->live_mappings >= 0)
        snprintf(lbuf, sizeof(lbuf), "%ld", r->live_mappings);
    if (r->guest_maps >= 0)
        snprintf(mbuf, sizeof(mbuf), "%ld", r->guest_maps);
    fprintf(stderr,
            "%s: report fds_start=%d fds_closed=%d live_mappings=%s "
            "guest_maps=%s\n",
            prog, r->fds_start, harness_count_fds(), lbuf, mbuf);
}
