/*
 * xg-layout: prints the layout of the callback structs and the constants of
 * the installed xenguest.h, one fact per line, so that Rust tests can compare
 * xcmig's #[repr(C)] mirrors with what the C compiler sees:
 *
 *   size STRUCT BYTES
 *   align STRUCT BYTES
 *   offset STRUCT FIELD BYTES
 *   fieldsize STRUCT FIELD BYTES
 *   const NAME VALUE
 *
 * It also checks each struct for internal consistency (fields inside the
 * struct, in declaration order, not overlapping) and exits 1 if one is not.
 */
#include <stddef.h>
#include <stdio.h>

#include <xenctrl.h>
#include <xenguest.h>

static int failures;
static size_t last_end;
static const char *last_struct;

static void struct_begin(const char *name, size_t size, size_t align)
{
    printf("size %s %zu\n", name, size);
    printf("align %s %zu\n", name, align);
    last_struct = name;
    last_end = 0;
}

static void field(const char *name, size_t offset, size_t size,
                  size_t struct_size)
{
    printf("offset %s %s %zu\n", last_struct, name, offset);
    printf("fieldsize %s %s %zu\n", last_struct, name, size);
    if (offset < last_end || offset + size > struct_size) {
        fprintf(stderr, "xg-layout: %s.%s at %zu+%zu overlaps or overflows\n",
                last_struct, name, offset, size);
        failures++;
    }
    last_end = offset + size;
}

#define STRUCT(S) struct_begin(#S, sizeof(struct S), _Alignof(struct S))
#define FIELD(S, F)                                                           \
    field(#F, offsetof(struct S, F), sizeof(((struct S *)0)->F),            \
          sizeof(struct S))
#define CONST(C) printf("const %s %ld\n", #C, (long)(C))

int main(void)
{
    STRUCT(precopy_stats);
    FIELD(precopy_stats, iteration);
    FIELD(precopy_stats, total_written);
    FIELD(precopy_stats, dirty_count);

    STRUCT(save_callbacks);
    FIELD(save_callbacks, suspend);
    FIELD(save_callbacks, precopy_policy);
    FIELD(save_callbacks, postcopy);
    FIELD(save_callbacks, checkpoint);
    FIELD(save_callbacks, wait_checkpoint);
    FIELD(save_callbacks, switch_qemu_logdirty);
    FIELD(save_callbacks, data);

    STRUCT(restore_callbacks);
    FIELD(restore_callbacks, static_data_done);
    FIELD(restore_callbacks, suspend);
    FIELD(restore_callbacks, postcopy);
    FIELD(restore_callbacks, checkpoint);
    FIELD(restore_callbacks, wait_checkpoint);
    FIELD(restore_callbacks, restore_results);
    FIELD(restore_callbacks, data);

    printf("size xen_pfn_t %zu\n", sizeof(xen_pfn_t));
    printf("size xc_stream_type_t %zu\n", sizeof(xc_stream_type_t));

    CONST(XCFLAGS_LIVE);
    CONST(XCFLAGS_DEBUG);
    CONST(XC_STREAM_PLAIN);
    CONST(XC_STREAM_REMUS);
    CONST(XC_STREAM_COLO);
    CONST(XGS_POLICY_ABORT);
    CONST(XGS_POLICY_CONTINUE_PRECOPY);
    CONST(XGS_POLICY_STOP_AND_COPY);
    CONST(XGR_SDD_MISSING_CPUID);
    CONST(XGR_SDD_MISSING_MSR);
    CONST(XGR_CHECKPOINT_ERROR);
    CONST(XGR_CHECKPOINT_SUCCESS);
    CONST(XGR_CHECKPOINT_FAILOVER);

    return failures ? 1 : 0;
}
