/*
 * xg-suspend: suspends a domain the way a toolstack can on Xen,
 * xc_domain_shutdown(SHUTDOWN_suspend), then reads the domain back with
 * xc_domain_getinfolist() to check that it reports a suspend shutdown.
 * The libxl-save-helper driver in xensim/tests calls it when the helper asks
 * for the suspend callback.
 *
 *   xg-suspend DOMID
 *
 * Prints "xg-suspend: domid=D shutdown=S reason=R" on stdout.
 * Exit status: 0 suspended, 1 a call failed or the state is wrong, 2 usage,
 * 3 setup.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xenctrl.h>

#include "harness.h"

#define PROG "xg-suspend"

int main(int argc, char **argv)
{
    unsigned long domid;
    struct harness_logger *lg;
    xc_domaininfo_t info;
    xc_interface *xch;
    unsigned int shutdown, reason;
    int rc;

    if (argc != 2 || !harness_parse_ulong(PROG, "DOMID", argv[1], 0x7fef,
                                          &domid)) {
        fprintf(stderr, "usage: " PROG " DOMID\n");
        return HARNESS_EXIT_USAGE;
    }
    lg = harness_logger_create(PROG, XTL_DETAIL);
    xch = harness_open_xc(PROG, lg);
    if (!xch)
        return HARNESS_EXIT_SETUP;

    if (xc_domain_shutdown(xch, (uint32_t)domid, SHUTDOWN_suspend) < 0) {
        fprintf(stderr, PROG ": xc_domain_shutdown(%lu, suspend): %s\n", domid,
                strerror(errno));
        rc = HARNESS_EXIT_CALL_FAILED;
        goto out;
    }

    memset(&info, 0, sizeof(info));
    /* getinfolist returns the first domains at or after the id asked for. */
    if (xc_domain_getinfolist(xch, (uint32_t)domid, 1, &info) != 1 ||
        info.domain != domid) {
        fprintf(stderr, PROG ": xc_domain_getinfolist(%lu) did not return it: %s\n",
                domid, strerror(errno));
        rc = HARNESS_EXIT_CALL_FAILED;
        goto out;
    }
    shutdown = !!(info.flags & XEN_DOMINF_shutdown);
    reason = (info.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
    printf(PROG ": domid=%lu shutdown=%u reason=%u\n", domid, shutdown, reason);
    rc = shutdown && reason == SHUTDOWN_suspend ? HARNESS_EXIT_OK
                                                : HARNESS_EXIT_CALL_FAILED;
    if (rc)
        fprintf(stderr, PROG ": domain %lu does not read as suspended\n", domid);
out:
    xc_interface_close(xch);
    xtl_logger_destroy((xentoollog_logger *)lg);
    return rc;
}
