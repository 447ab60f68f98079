/*
 * xg-cycle: save and restore a guest again and again inside one process,
 * as a long-lived toolstack daemon does, sampling the process's own file
 * descriptors, memory mappings and resident memory after every cycle, so a
 * leak in the library behind xc_domain_save()/xc_domain_restore() shows as
 * a growing series.
 *
 *   xg-cycle [--live] [--verbose] DOMID DIR
 *
 * DOMID is a running guest.  Each line read from stdin is the domid of an
 * empty domain the caller created for the next cycle (the harness cannot
 * create domains: that is the toolstack's domain builder, outside
 * libxenguest).  A cycle lets the guest run (xc_domain_unpause, needed from
 * the second cycle on: a restored domain stays paused until its toolstack
 * unpauses it), saves it with xc_domain_save() into DIR/cycle.img (suspend =
 * xc_domain_shutdown(SHUTDOWN_suspend), as xg-save), then restores that file
 * into the new domain with xc_domain_restore(); the restored domain is the
 * next cycle's guest.  The stream file is opened and closed around each call,
 * so the harness itself holds the same descriptors between cycles.  One
 * xc_interface serves every cycle.  End of input ends the run.
 *
 * After each cycle one line goes to stdout (flushed), for the caller to
 * parse:
 *   xg-cycle: cycle n=N src=S dst=D save_rc=R save_errno=E restore_rc=R
 *             restore_errno=E save_ns=T restore_ns=T fds=F maps=M
 *             rss_kib=K hwm_kib=H
 * (one line), fds counting /proc/self/fd without the descriptor that reads
 * it, maps the lines of /proc/self/maps, rss_kib and hwm_kib VmRSS and
 * VmHWM from /proc/self/status.  After a failed cycle the guest is not
 * replaced and the run goes on with the next line (the caller decides).
 * Exit status: 0 every cycle succeeded, 1 one failed, 2 usage, 3 setup.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenguest.h>

#include "harness.h"

#define PROG "xg-cycle"

struct cycle_ctx {
    xc_interface *xch;
    uint32_t domid;
};

static int cb_suspend(void *data)
{
    struct cycle_ctx *ctx = data;

    if (xc_domain_shutdown(ctx->xch, ctx->domid, SHUTDOWN_suspend) < 0) {
        fprintf(stderr, PROG ": xc_domain_shutdown(%u, suspend) failed: %s\n",
                ctx->domid, strerror(errno));
        return 0; /* the guest did not suspend */
    }
    return 1;
}

static int cb_switch_qemu_logdirty(uint32_t domid, unsigned enable, void *data)
{
    (void)domid;
    (void)enable;
    (void)data;
    return 0; /* no device model to switch */
}

static int cb_static_data_done(unsigned int missing, void *data)
{
    (void)missing;
    (void)data;
    return 0;
}

static void cb_restore_results(xen_pfn_t store_gfn, xen_pfn_t console_gfn,
                               void *data)
{
    (void)store_gfn;
    (void)console_gfn;
    (void)data;
}

static unsigned long long now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ULL +
           (unsigned long long)ts.tv_nsec;
}

/* Lines of /proc/self/maps: one per mapping region. */
static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    long n = 0;
    int c;

    if (!f)
        return -1;
    while ((c = getc(f)) != EOF)
        if (c == '\n')
            n++;
    fclose(f);
    return n;
}

/* VmRSS and VmHWM in KiB from /proc/self/status (-1 when absent). */
static void read_rss(long *rss_kib, long *hwm_kib)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];

    *rss_kib = -1;
    *hwm_kib = -1;
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "VmRSS:", 6))
            *rss_kib = strtol(line + 6, NULL, 10);
        else if (!strncmp(line, "VmHWM:", 6))
            *hwm_kib = strtol(line + 6, NULL, 10);
    }
    fclose(f);
}

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " [--live] [--verbose] DOMID DIR\n"
                    "  then one empty target domid per line on stdin\n");
    exit(HARNESS_EXIT_USAGE);
}

int main(int argc, char **argv)
{
    uint32_t flags = 0;
    xentoollog_level level = XTL_WARN;
    unsigned long domid, cycle = 0;
    struct harness_logger *lg;
    struct cycle_ctx ctx = { 0 };
    struct save_callbacks scbs;
    struct restore_callbacks rcbs;
    char img[4096], line[64];
    int argi, failed = 0;

    for (argi = 1; argi < argc && argv[argi][0] == '-' && argv[argi][1] == '-';
         argi++) {
        if (!strcmp(argv[argi], "--live"))
            flags |= XCFLAGS_LIVE;
        else if (!strcmp(argv[argi], "--verbose"))
            level = XTL_DETAIL;
        else {
            fprintf(stderr, PROG ": unknown option %s\n", argv[argi]);
            usage();
        }
    }
    if (argc - argi != 2)
        usage();
    if (!harness_parse_ulong(PROG, "DOMID", argv[argi], 0x7fef, &domid))
        usage();
    if ((size_t)snprintf(img, sizeof(img), "%s/cycle.img", argv[argi + 1]) >=
        sizeof(img)) {
        fprintf(stderr, PROG ": DIR is too long\n");
        return HARNESS_EXIT_USAGE;
    }

    lg = harness_logger_create(PROG, level);
    ctx.xch = harness_open_xc(PROG, lg);
    if (!ctx.xch)
        return HARNESS_EXIT_SETUP;
    ctx.domid = (uint32_t)domid;

    memset(&scbs, 0, sizeof(scbs));
    scbs.suspend = cb_suspend;
    scbs.switch_qemu_logdirty = cb_switch_qemu_logdirty;
    scbs.data = &ctx;
    memset(&rcbs, 0, sizeof(rcbs));
    rcbs.static_data_done = cb_static_data_done;
    rcbs.restore_results = cb_restore_results;

    while (fgets(line, sizeof(line), stdin)) {
        unsigned long dst, store_gfn = 0, console_gfn = 0;
        unsigned long long t0, t1, t2;
        int save_rc, save_errno = 0, restore_rc = -1, restore_errno = 0, fd;
        long rss, hwm;

        line[strcspn(line, "\n")] = '\0';
        if (!harness_parse_ulong(PROG, "target domid", line, 0x7fef, &dst))
            return HARNESS_EXIT_USAGE;
        cycle++;

        /* A restored guest is paused until its toolstack lets it run. */
        if (cycle > 1 && xc_domain_unpause(ctx.xch, ctx.domid) < 0)
            fprintf(stderr, PROG ": xc_domain_unpause(%u): %s\n", ctx.domid,
                    strerror(errno));

        t0 = now_ns();
        fd = open(img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            fprintf(stderr, PROG ": cannot open %s: %s\n", img,
                    strerror(errno));
            return HARNESS_EXIT_SETUP;
        }
        save_rc = xc_domain_save(ctx.xch, fd, ctx.domid, flags, &scbs,
                                 XC_STREAM_PLAIN, -1);
        if (save_rc)
            save_errno = errno;
        close(fd);
        t1 = now_ns();

        if (save_rc == 0) {
            fd = open(img, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                fprintf(stderr, PROG ": cannot open %s: %s\n", img,
                        strerror(errno));
                return HARNESS_EXIT_SETUP;
            }
            restore_rc = xc_domain_restore(ctx.xch, fd, (uint32_t)dst, 1,
                                           &store_gfn, 0, 2, &console_gfn, 0,
                                           XC_STREAM_PLAIN, &rcbs, -1);
            if (restore_rc)
                restore_errno = errno;
            close(fd);
        }
        t2 = now_ns();

        read_rss(&rss, &hwm);
        printf(PROG ": cycle n=%lu src=%u dst=%lu save_rc=%d save_errno=%d "
                    "restore_rc=%d restore_errno=%d save_ns=%llu "
                    "restore_ns=%llu fds=%ld maps=%ld rss_kib=%ld "
                    "hwm_kib=%ld\n",
               cycle, ctx.domid, dst, save_rc, save_errno, restore_rc,
               restore_errno, t1 - t0, t2 - t1, (long)harness_count_fds(), count_maps(), rss,
               hwm);
        fflush(stdout);
        if (save_rc == 0 && restore_rc == 0)
            ctx.domid = (uint32_t)dst;
        else
            failed = 1;
    }

    xc_interface_close(ctx.xch);
    xtl_logger_destroy((xentoollog_logger *)lg);
    return failed ? HARNESS_EXIT_CALL_FAILED : HARNESS_EXIT_OK;
}
