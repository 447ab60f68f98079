/*
 * The three C-variadic entry points of libxenctrl (xc_report, xc_report_error,
 * xc_reportv). Stable Rust cannot define C-variadic functions, so this file
 * only formats the message and hands the resulting string to the Rust side
 * (xensim_shim_report_msg in src/exports/xenctrl/logging.rs), which does the
 * logging. Compiled into the shim's staticlib by build.rs (the cc crate); the
 * version scripts export it from libxenctrl.so.4.17 only.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

/* Rust: logs msg through lg, or through the interface's error handler when
 * use_error_handler is non-zero. */
extern void xensim_shim_report_msg(void *xch, void *lg, int use_error_handler,
                                   int level, int code, const char *msg);

#define XTL_ERROR 8
#define MSG_LEN 1024

static void report_va(void *xch, void *lg, int use_error_handler, int level,
                      int code, const char *fmt, va_list args)
{
    char msg[MSG_LEN];
    int saved_errno = errno;

    if (fmt == NULL)
        fmt = "(null format)";
    vsnprintf(msg, sizeof(msg), fmt, args);
    xensim_shim_report_msg(xch, lg, use_error_handler, level, code, msg);
    errno = saved_errno;
}

void xc_reportv(void *xch, void *lg, int level, int code, const char *fmt,
                va_list args)
{
    report_va(xch, lg, 0, level, code, fmt, args);
}

void xc_report(void *xch, void *lg, int level, int code, const char *fmt, ...)
{
    va_list args;

    va_start(args, fmt);
    report_va(xch, lg, 0, level, code, fmt, args);
    va_end(args);
}

void xc_report_error(void *xch, int code, const char *fmt, ...)
{
    va_list args;

    va_start(args, fmt);
    report_va(xch, NULL, 1, XTL_ERROR, code, fmt, args);
    va_end(args);
}
