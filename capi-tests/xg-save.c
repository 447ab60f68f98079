/*
 * xg-save: saves a domain through xc_domain_save(), as a toolstack does.
 *
 *   xg-save [--live] [--debug] [--stats] [--progress] [--verbose]
 *           [--remus N] DOMID TARGET
 *
 * TARGET is a file (created or truncated) or "fd:N" for an open descriptor.
 * The suspend callback suspends the guest with
 * xc_domain_shutdown(SHUTDOWN_suspend), as libxl does through the guest's
 * control node; switch_qemu_logdirty has no device model to switch and
 * succeeds.  --stats installs a precopy_policy callback that prints every
 * statistics snapshot and decides like libxenguest's documented default
 * (stop and copy below 50 dirty pages or from iteration 5); without it the
 * library's own default policy runs.  --progress prints every progress
 * update the library reports, not only the first and last of each phase
 * (the demo's live display follows them).  --remus N saves a Remus
 * (XC_STREAM_REMUS) stream of N checkpoints, live first round, as libxl
 * drives it: postcopy resumes the guest (XEN_DOMCTL_resumedomain, what
 * libxl's fast resume does), checkpoint asks for another one until the
 * N-th, then ends replication.  XG_HARNESS_REPORT=1 adds the report line
 * described in harness.h.
 *
 * Lines on stderr starting with "xg-save: " are meant to be parsed:
 *   xg-save: switch_qemu_logdirty domid=D enable=E
 *   xg-save: suspend domid=D rc=R
 *   xg-save: postcopy domid=D rc=R          (--remus)
 *   xg-save: checkpoint n=I decision=C      (--remus)
 *   xg-save: timestamp event=suspended monotonic_ns=N  (the guest stopped)
 *   xg-save: precopy iteration=I total_written=W dirty_count=C decision=P
 *   xg-save: progress context=C what="W" done=N total=N
 *   xg-save: result rc=R errno=E (text)
 *   xg-save: report fds_before=N ...        (XG_HARNESS_REPORT=1)
 * Exit status: 0 saved, 1 xc_domain_save returned -1, 2 usage, 3 setup.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenguest.h>

#include "harness.h"

#define PROG "xg-save"

/* The documented default of libxenguest's precopy loop. */
#define DEFAULT_POLICY_MAX_ITERATIONS 5
#define DEFAULT_POLICY_TARGET_DIRTY 50

struct save_ctx {
    xc_interface *xch;
    uint32_t domid;
    unsigned int suspends;
    unsigned long checkpoints_wanted; /* --remus N */
    unsigned long checkpoints;
};

static int cb_suspend(void *data)
{
    struct save_ctx *ctx = data;
    int rc = xc_domain_shutdown(ctx->xch, ctx->domid, SHUTDOWN_suspend);

    if (rc == 0)
        harness_timestamp(PROG, "suspended");
    ctx->suspends++;
    fprintf(stderr, PROG ": suspend domid=%u rc=%d\n", ctx->domid, rc);
    if (rc < 0) {
        fprintf(stderr, PROG ": xc_domain_shutdown failed: %s\n",
                strerror(errno));
        return 0; /* 0 tells libxenguest the guest did not suspend */
    }
    return 1;
}

static int cb_postcopy(void *data)
{
    struct save_ctx *ctx = data;
    struct xen_domctl domctl;
    int rc;

    memset(&domctl, 0, sizeof(domctl));
    domctl.cmd = XEN_DOMCTL_resumedomain;
    domctl.interface_version = XEN_DOMCTL_INTERFACE_VERSION;
    domctl.domain = (domid_t)ctx->domid;
    rc = xc_domctl(ctx->xch, &domctl);
    fprintf(stderr, PROG ": postcopy domid=%u rc=%d\n", ctx->domid, rc);
    if (rc < 0) {
        fprintf(stderr, PROG ": xc_domctl(resumedomain) failed: %s\n",
                strerror(errno));
        return 0; /* the guest could not be resumed */
    }
    return 1;
}

static int cb_checkpoint(void *data)
{
    struct save_ctx *ctx = data;
    int decision = ++ctx->checkpoints < ctx->checkpoints_wanted;

    fprintf(stderr, PROG ": checkpoint n=%lu decision=%d\n", ctx->checkpoints,
            decision);
    return decision;
}

static int cb_switch_qemu_logdirty(uint32_t domid, unsigned enable, void *data)
{
    (void)data;
    fprintf(stderr, PROG ": switch_qemu_logdirty domid=%u enable=%u\n", domid,
            enable);
    return 0; /* no device model: nothing to switch, success */
}

static int cb_precopy_policy(struct precopy_stats stats, void *data)
{
    int decision;

    (void)data;
    if ((stats.dirty_count >= 0 &&
         stats.dirty_count < DEFAULT_POLICY_TARGET_DIRTY) ||
        stats.iteration >= DEFAULT_POLICY_MAX_ITERATIONS)
        decision = XGS_POLICY_STOP_AND_COPY;
    else
        decision = XGS_POLICY_CONTINUE_PRECOPY;
    fprintf(stderr,
            PROG ": precopy iteration=%u total_written=%lu dirty_count=%ld "
                 "decision=%d\n",
            stats.iteration, stats.total_written, stats.dirty_count, decision);
    return decision;
}

static void usage(void)
{
    fprintf(stderr, "usage: " PROG
                    " [--live] [--debug] [--stats] [--progress] [--verbose] "
                    "[--remus N] DOMID "
                    "FILE|fd:N\n");
    exit(HARNESS_EXIT_USAGE);
}

int main(int argc, char **argv)
{
    uint32_t flags = 0;
    bool stats = false;
    bool every_step = false;
    xentoollog_level level = XTL_DETAIL;
    unsigned long domid;
    struct harness_logger *lg;
    struct save_ctx ctx = { 0 };
    struct save_callbacks cbs;
    struct harness_report report;
    xc_stream_type_t stream = XC_STREAM_PLAIN;
    int argi, fd, rc, saved_errno;

    for (argi = 1; argi < argc && argv[argi][0] == '-' && argv[argi][1] == '-';
         argi++) {
        const char *opt = argv[argi];

        if (!strcmp(opt, "--live"))
            flags |= XCFLAGS_LIVE;
        else if (!strcmp(opt, "--debug"))
            flags |= XCFLAGS_DEBUG;
        else if (!strcmp(opt, "--stats"))
            stats = true;
        else if (!strcmp(opt, "--progress"))
            every_step = true;
        else if (!strcmp(opt, "--verbose"))
            level = XTL_DEBUG;
        else if (!strcmp(opt, "--remus")) {
            if (++argi >= argc ||
                !harness_parse_ulong(PROG, opt, argv[argi], 1000000,
                                     &ctx.checkpoints_wanted) ||
                ctx.checkpoints_wanted == 0)
                usage();
            stream = XC_STREAM_REMUS;
            flags |= XCFLAGS_LIVE;
        } else {
            fprintf(stderr, PROG ": unknown option %s\n", opt);
            usage();
        }
    }
    if (argc - argi != 2)
        usage();
    if (!harness_parse_ulong(PROG, "DOMID", argv[argi], 0x7fef, &domid))
        usage();

    lg = harness_logger_create(PROG, level);
    lg->every_step = every_step;
    fd = harness_open_stream(PROG, argv[argi + 1],
                             O_WRONLY | O_CREAT | O_TRUNC);
    if (fd < 0)
        return HARNESS_EXIT_SETUP;
    harness_report_start(&report);
    ctx.xch = harness_open_xc(PROG, lg);
    if (!ctx.xch)
        return HARNESS_EXIT_SETUP;
    ctx.domid = (uint32_t)domid;

    memset(&cbs, 0, sizeof(cbs));
    cbs.suspend = cb_suspend;
    cbs.switch_qemu_logdirty = cb_switch_qemu_logdirty;
    if (stats)
        cbs.precopy_policy = cb_precopy_policy;
    if (stream == XC_STREAM_REMUS) {
        cbs.postcopy = cb_postcopy;
        cbs.checkpoint = cb_checkpoint;
    }
    cbs.data = &ctx;

    harness_report_call(PROG, &report);
    rc = xc_domain_save(ctx.xch, fd, ctx.domid, flags, &cbs, stream, -1);
    saved_errno = errno;
    harness_report_returned(PROG, &report);
    fprintf(stderr, PROG ": result rc=%d errno=%d (%s) suspends=%u\n", rc,
            rc ? saved_errno : 0, rc ? strerror(saved_errno) : "ok",
            ctx.suspends);

    xc_interface_close(ctx.xch);
    harness_report_finish(PROG, &report);
    xtl_logger_destroy((xentoollog_logger *)lg);
    return rc == 0 ? HARNESS_EXIT_OK : HARNESS_EXIT_CALL_FAILED;
}
