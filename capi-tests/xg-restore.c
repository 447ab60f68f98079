/*
 * xg-restore: restores a domain through xc_domain_restore(), as a toolstack
 * does into a domain it created empty.
 *
 *   xg-restore [--store-evtchn N] [--console-evtchn N] [--store-domid N]
 *              [--console-domid N] [--verbose] DOMID SOURCE
 *
 * SOURCE is a file or "fd:N" for an open descriptor.  Event channels default
 * to 1 (store) and 2 (console), backend domains to 0.
 *
 * Lines on stderr starting with "xg-restore: " are meant to be parsed:
 *   xg-restore: static_data_done missing=0xM
 *   xg-restore: restore_results store_gfn=0xS console_gfn=0xC
 *   xg-restore: progress context=C what="W" done=N total=N
 *   xg-restore: timestamp event=restored monotonic_ns=N  (restore returned 0)
 *   xg-restore: result rc=R errno=E (text) store_gfn=0xS console_gfn=0xC
 *   xg-restore: report fds_before=N ...  (XG_HARNESS_REPORT=1, harness.h)
 * On success stdout gets one line "store_gfn=0xS console_gfn=0xC".
 * Exit status: 0 restored, 1 xc_domain_restore returned -1, 2 usage, 3 setup.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xenctrl.h>
#include <xenguest.h>

#include "harness.h"

#define PROG "xg-restore"

static int cb_static_data_done(unsigned int missing, void *data)
{
    (void)data;
    fprintf(stderr, PROG ": static_data_done missing=0x%x\n", missing);
    return 0; /* nothing to make up for: success */
}

static void cb_restore_results(xen_pfn_t store_gfn, xen_pfn_t console_gfn,
                               void *data)
{
    (void)data;
    fprintf(stderr, PROG ": restore_results store_gfn=0x%lx console_gfn=0x%lx\n",
            (unsigned long)store_gfn, (unsigned long)console_gfn);
}

static void usage(void)
{
    fprintf(stderr, "usage: " PROG
                    " [--store-evtchn N] [--console-evtchn N] "
                    "[--store-domid N] [--console-domid N] [--verbose] "
                    "DOMID FILE|fd:N\n");
    exit(HARNESS_EXIT_USAGE);
}

int main(int argc, char **argv)
{
    unsigned long store_evtchn = 1, console_evtchn = 2;
    unsigned long store_domid = 0, console_domid = 0;
    unsigned long domid, store_gfn = 0, console_gfn = 0;
    xentoollog_level level = XTL_DETAIL;
    struct harness_logger *lg;
    struct restore_callbacks cbs;
    xc_interface *xch;
    struct harness_report report;
    int argi, fd, rc, saved_errno;

    for (argi = 1; argi < argc && argv[argi][0] == '-' && argv[argi][1] == '-';
         argi++) {
        const char *opt = argv[argi];
        unsigned long *target = NULL;
        unsigned long max = 0;

        if (!strcmp(opt, "--verbose")) {
            level = XTL_DEBUG;
            continue;
        }
        if (!strcmp(opt, "--store-evtchn")) {
            target = &store_evtchn;
            max = 0xffffffffUL;
        } else if (!strcmp(opt, "--console-evtchn")) {
            target = &console_evtchn;
            max = 0xffffffffUL;
        } else if (!strcmp(opt, "--store-domid")) {
            target = &store_domid;
            max = 0xffff;
        } else if (!strcmp(opt, "--console-domid")) {
            target = &console_domid;
            max = 0xffff;
        } else {
            fprintf(stderr, PROG ": unknown option %s\n", opt);
            usage();
        }
        if (++argi >= argc || !harness_parse_ulong(PROG, opt, argv[argi], max,
                                                   target))
            usage();
    }
    if (argc - argi != 2)
        usage();
    if (!harness_parse_ulong(PROG, "DOMID", argv[argi], 0x7fef, &domid))
        usage();

    lg = harness_logger_create(PROG, level);
    fd = harness_open_stream(PROG, argv[argi + 1], O_RDONLY);
    if (fd < 0)
        return HARNESS_EXIT_SETUP;
    harness_report_start(&report);
    xch = harness_open_xc(PROG, lg);
    if (!xch)
        return HARNESS_EXIT_SETUP;

    memset(&cbs, 0, sizeof(cbs));
    cbs.static_data_done = cb_static_data_done;
    cbs.restore_results = cb_restore_results;

    harness_report_call(PROG, &report);
    rc = xc_domain_restore(xch, fd, (uint32_t)domid, (unsigned)store_evtchn,
                           &store_gfn, (uint32_t)store_domid,
                           (unsigned)console_evtchn, &console_gfn,
                           (uint32_t)console_domid, XC_STREAM_PLAIN, &cbs, -1);
    saved_errno = errno;
    harness_report_returned(PROG, &report);
    if (rc == 0)
        harness_timestamp(PROG, "restored");
    fprintf(stderr,
            PROG ": result rc=%d errno=%d (%s) store_gfn=0x%lx "
                 "console_gfn=0x%lx\n",
            rc, rc ? saved_errno : 0, rc ? strerror(saved_errno) : "ok",
            store_gfn, console_gfn);
    if (rc == 0)
        printf("store_gfn=0x%lx console_gfn=0x%lx\n", store_gfn, console_gfn);

    xc_interface_close(xch);
    harness_report_finish(PROG, &report);
    xtl_logger_destroy((xentoollog_logger *)lg);
    return rc == 0 ? HARNESS_EXIT_OK : HARNESS_EXIT_CALL_FAILED;
}
