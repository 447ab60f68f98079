/*
 * xg-hvmparam: reads HVM params with xc_hvm_param_get(), as a toolstack
 * checks what a restore set (event channels, magic-page gfns).
 *
 *   xg-hvmparam DOMID INDEX...
 *
 * Prints "param INDEX 0xVALUE" per index on stdout.
 * Exit status: 0 all read, 1 a call failed, 2 usage, 3 setup.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <xenctrl.h>

#include "harness.h"

#define PROG "xg-hvmparam"

int main(int argc, char **argv)
{
    unsigned long domid, index;
    struct harness_logger *lg;
    xc_interface *xch;
    uint64_t value;
    int i, rc = HARNESS_EXIT_OK;

    if (argc < 3 || !harness_parse_ulong(PROG, "DOMID", argv[1], 0x7fef,
                                         &domid)) {
        fprintf(stderr, "usage: " PROG " DOMID INDEX...\n");
        return HARNESS_EXIT_USAGE;
    }
    for (i = 2; i < argc; i++)
        if (!harness_parse_ulong(PROG, "INDEX", argv[i], 0xffffffffUL, &index)) {
            fprintf(stderr, "usage: " PROG " DOMID INDEX...\n");
            return HARNESS_EXIT_USAGE;
        }

    lg = harness_logger_create(PROG, XTL_DETAIL);
    xch = harness_open_xc(PROG, lg);
    if (!xch)
        return HARNESS_EXIT_SETUP;
    for (i = 2; i < argc; i++) {
        harness_parse_ulong(PROG, "INDEX", argv[i], 0xffffffffUL, &index);
        if (xc_hvm_param_get(xch, (uint32_t)domid, (uint32_t)index, &value) < 0) {
            fprintf(stderr, PROG ": xc_hvm_param_get(%lu, %lu): %s\n", domid,
                    index, strerror(errno));
            rc = HARNESS_EXIT_CALL_FAILED;
            continue;
        }
        printf("param %lu 0x%llx\n", index, (unsigned long long)value);
    }
    xc_interface_close(xch);
    xtl_logger_destroy((xentoollog_logger *)lg);
    return rc;
}
