/*
 * Shared helpers of the capi-tests harnesses: logging, argument parsing and
 * opening the Xen interface.  The harnesses play the part of a toolstack:
 * they call xc_domain_save()/xc_domain_restore() exactly as declared in the
 * installed xenguest.h and report what happened in lines a test can parse.
 */
#ifndef XCMIG_CAPI_TESTS_HARNESS_H
#define XCMIG_CAPI_TESTS_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include <xenctrl.h>
#include <xentoollog.h>

/* Exit statuses shared by every harness. */
#define HARNESS_EXIT_OK 0
#define HARNESS_EXIT_CALL_FAILED 1 /* the libxenguest call returned -1 */
#define HARNESS_EXIT_USAGE 2       /* bad command line */
#define HARNESS_EXIT_SETUP 3       /* could not open a file or the interface */

/*
 * A logger that forwards messages to an xtl stdiostream logger on stderr and
 * reports progress as one parsable line per phase:
 *   "<prog>: progress context=<c> what="<w>" done=<n> total=<n>"
 * printed when a phase starts (done == 0 or a new "what") and when it
 * finishes (done == total).  The stdio logger itself drops progress updates
 * whose percentage did not change, which would hide short iterations.
 * With every_step set (a harness's --progress option), every update is
 * printed in that form, so a live display can follow a phase as it goes.
 */
struct harness_logger {
    xentoollog_logger vtable;
    xentoollog_logger_stdiostream *inner;
    const char *prog;
    char last_what[128];
    unsigned long phases;
    bool every_step;
};

/* Creates the logger; exits with HARNESS_EXIT_SETUP on failure. */
struct harness_logger *harness_logger_create(const char *prog,
                                             xentoollog_level min_level);

/*
 * Parses a decimal unsigned number that must fit in max; returns false
 * (and prints why) on anything else.
 */
bool harness_parse_ulong(const char *prog, const char *what, const char *text,
                         unsigned long max, unsigned long *out);

/*
 * Opens a stream target: "fd:N" names an already open descriptor, anything
 * else is a path opened with the given flags.  Returns the fd or -1 after
 * printing the reason.
 */
int harness_open_stream(const char *prog, const char *spec, int flags);

/* Opens the Xen interface with the logger for both log channels. */
xc_interface *harness_open_xc(const char *prog, struct harness_logger *lg);

/*
 * Prints "<prog>: timestamp event=<event> monotonic_ns=<N>" on stderr, N
 * being CLOCK_MONOTONIC now, so another process (the benchmark) can time
 * the span between events of different harnesses on one machine.
 */
void harness_timestamp(const char *prog, const char *event);

/* Descriptors open in this process (/proc/self/fd), or -1. */
int harness_count_fds(void);

/*
 * The opt-in report around the library call, enabled by
 * XG_HARNESS_REPORT=1 in the environment (a fault sweep or a leak check
 * sets it).  A harness calls harness_report_start() just before opening
 * the Xen interface, harness_report_call() just before
 * xc_domain_save()/xc_domain_restore(), harness_report_returned() just
 * after it, and harness_report_finish() after xc_interface_close(), which
 * prints on stderr
 *   "<prog>: report fds_start=N fds_closed=N live_mappings=N|- guest_maps=N|-"
 * fds_start / fds_closed: descriptors open in the process (/proc/self/fd)
 * before the interface was opened and after it was closed, so a handle the
 * simulated libraries cache while it is open does not count and anything
 * the call left open does.  live_mappings: at the call's return, the
 * foreign mapping regions the simulated libxenctrl and libxenforeignmemory
 * still hold (their private xensim_shim_live_mappings, found with dlsym;
 * "-" on Xen's real libraries).  guest_maps: at the call's return, lines of
 * /proc/self/maps naming a simulated guest's memory or grant file under
 * $XENSIM_HOST, which also catches regions released by a plain munmap
 * ("-" without XENSIM_HOST).  With $XENSIM_FAULT_TRACE set, the call is
 * bracketed in that trace by "# <prog> call begins" / "# <prog> call ends"
 * lines, so the fault points the call checks can be told from the
 * harness's own (xc_interface_open and the like).
 */
struct harness_report {
    bool enabled;
    int fds_start;
    long live_mappings;
    long guest_maps;
};

void harness_report_start(struct harness_report *r);
void harness_report_call(const char *prog, const struct harness_report *r);
void harness_report_returned(const char *prog, struct harness_report *r);
void harness_report_finish(const char *prog, const struct harness_report *r);

#endif