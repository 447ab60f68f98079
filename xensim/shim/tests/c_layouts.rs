//! Checks every offset in `xensim_shim::abi` (and the hypercall-buffer and
//! xc_interface layouts) against the installed Xen 4.17 headers, by compiling
//! a C probe with gcc at test time.

use std::collections::HashMap;
use std::process::Command;

use xensim_shim::abi::*;

const PROBE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <xenctrl.h>
#include <xen/domctl.h>
#include <xen/sysctl.h>
#include <xen/memory.h>
#define P(n, e) printf("%s %zu\n", n, (size_t)(e))
int main(void) {
  P("domctl.size", sizeof(struct xen_domctl));
  P("sysctl.size", sizeof(struct xen_sysctl));
  P("domctl.u", offsetof(struct xen_domctl, u));
  P("domctl.cmd", offsetof(struct xen_domctl, cmd));
  P("domctl.interface_version", offsetof(struct xen_domctl, interface_version));
  P("domctl.domain", offsetof(struct xen_domctl, domain));
  P("sysctl.u", offsetof(struct xen_sysctl, u));
  P("version", XEN_DOMCTL_INTERFACE_VERSION);
  P("sysversion", XEN_SYSCTL_INTERFACE_VERSION);
  P("shadow.op", offsetof(struct xen_domctl_shadow_op, op));
  P("shadow.mode", offsetof(struct xen_domctl_shadow_op, mode));
  P("shadow.mb", offsetof(struct xen_domctl_shadow_op, mb));
  P("shadow.dirty_bitmap", offsetof(struct xen_domctl_shadow_op, dirty_bitmap));
  P("shadow.pages", offsetof(struct xen_domctl_shadow_op, pages));
  P("shadow.fault_count", offsetof(struct xen_domctl_shadow_op, stats.fault_count));
  P("shadow.dirty_count", offsetof(struct xen_domctl_shadow_op, stats.dirty_count));
  P("dcp.nr_leaves", offsetof(struct xen_domctl_cpu_policy, nr_leaves));
  P("dcp.nr_msrs", offsetof(struct xen_domctl_cpu_policy, nr_msrs));
  P("dcp.leaves", offsetof(struct xen_domctl_cpu_policy, leaves));
  P("dcp.msrs", offsetof(struct xen_domctl_cpu_policy, msrs));
  P("dcp.err_leaf", offsetof(struct xen_domctl_cpu_policy, err_leaf));
  P("dcp.err_subleaf", offsetof(struct xen_domctl_cpu_policy, err_subleaf));
  P("dcp.err_msr", offsetof(struct xen_domctl_cpu_policy, err_msr));
  P("scp.index", offsetof(struct xen_sysctl_cpu_policy, index));
  P("scp.nr_leaves", offsetof(struct xen_sysctl_cpu_policy, nr_leaves));
  P("scp.nr_msrs", offsetof(struct xen_sysctl_cpu_policy, nr_msrs));
  P("scp._rsvd", offsetof(struct xen_sysctl_cpu_policy, _rsvd));
  P("scp.leaves", offsetof(struct xen_sysctl_cpu_policy, leaves));
  P("scp.msrs", offsetof(struct xen_sysctl_cpu_policy, msrs));
  P("tsc.tsc_mode", offsetof(struct xen_domctl_tsc_info, tsc_mode));
  P("tsc.gtsc_khz", offsetof(struct xen_domctl_tsc_info, gtsc_khz));
  P("tsc.incarnation", offsetof(struct xen_domctl_tsc_info, incarnation));
  P("tsc.elapsed_nsec", offsetof(struct xen_domctl_tsc_info, elapsed_nsec));
  P("hvmctx.size", offsetof(struct xen_domctl_hvmcontext, size));
  P("hvmctx.buffer", offsetof(struct xen_domctl_hvmcontext, buffer));
  P("pf3.num", offsetof(struct xen_domctl_getpageframeinfo3, num));
  P("pf3.array", offsetof(struct xen_domctl_getpageframeinfo3, array));
  P("leaf.size", sizeof(xen_cpuid_leaf_t));
  P("msr.size", sizeof(xen_msr_entry_t));
  P("di.size", sizeof(xc_domaininfo_t));
  P("di.domain", offsetof(xc_domaininfo_t, domain));
  P("di.flags", offsetof(xc_domaininfo_t, flags));
  P("di.tot_pages", offsetof(xc_domaininfo_t, tot_pages));
  P("di.max_pages", offsetof(xc_domaininfo_t, max_pages));
  P("di.outstanding_pages", offsetof(xc_domaininfo_t, outstanding_pages));
  P("di.shr_pages", offsetof(xc_domaininfo_t, shr_pages));
  P("di.paged_pages", offsetof(xc_domaininfo_t, paged_pages));
  P("di.shared_info_frame", offsetof(xc_domaininfo_t, shared_info_frame));
  P("di.cpu_time", offsetof(xc_domaininfo_t, cpu_time));
  P("di.nr_online_vcpus", offsetof(xc_domaininfo_t, nr_online_vcpus));
  P("di.max_vcpu_id", offsetof(xc_domaininfo_t, max_vcpu_id));
  P("di.ssidref", offsetof(xc_domaininfo_t, ssidref));
  P("di.handle", offsetof(xc_domaininfo_t, handle));
  P("di.cpupool", offsetof(xc_domaininfo_t, cpupool));
  P("di.gpaddr_bits", offsetof(xc_domaininfo_t, gpaddr_bits));
  P("di.arch_config", offsetof(xc_domaininfo_t, arch_config));
  P("dinf.dying", XEN_DOMINF_dying);
  P("dinf.hvm", XEN_DOMINF_hvm_guest);
  P("dinf.shutdown", XEN_DOMINF_shutdown);
  P("dinf.paused", XEN_DOMINF_paused);
  P("dinf.blocked", XEN_DOMINF_blocked);
  P("dinf.running", XEN_DOMINF_running);
  P("dinf.debugged", XEN_DOMINF_debugged);
  P("dinf.xs", XEN_DOMINF_xs_domain);
  P("dinf.hap", XEN_DOMINF_hap);
  P("dinf.shift", XEN_DOMINF_shutdownshift);
  P("xi.size", sizeof(xc_dominfo_t));
  P("xi.domid", offsetof(xc_dominfo_t, domid));
  P("xi.ssidref", offsetof(xc_dominfo_t, ssidref));
  P("xi.shutdown_reason", offsetof(xc_dominfo_t, shutdown_reason));
  P("xi.nr_pages", offsetof(xc_dominfo_t, nr_pages));
  P("xi.nr_outstanding_pages", offsetof(xc_dominfo_t, nr_outstanding_pages));
  P("xi.nr_shared_pages", offsetof(xc_dominfo_t, nr_shared_pages));
  P("xi.nr_paged_pages", offsetof(xc_dominfo_t, nr_paged_pages));
  P("xi.shared_info_frame", offsetof(xc_dominfo_t, shared_info_frame));
  P("xi.cpu_time", offsetof(xc_dominfo_t, cpu_time));
  P("xi.max_memkb", offsetof(xc_dominfo_t, max_memkb));
  P("xi.nr_online_vcpus", offsetof(xc_dominfo_t, nr_online_vcpus));
  P("xi.max_vcpu_id", offsetof(xc_dominfo_t, max_vcpu_id));
  P("xi.handle", offsetof(xc_dominfo_t, handle));
  P("xi.cpupool", offsetof(xc_dominfo_t, cpupool));
  P("xi.gpaddr_bits", offsetof(xc_dominfo_t, gpaddr_bits));
  P("xi.arch_config", offsetof(xc_dominfo_t, arch_config));
  {
    /* The one-bit fields of xc_dominfo_t, located by setting each alone. */
    xc_dominfo_t i;
    unsigned int w;
#define BIT(f) do { memset(&i, 0, sizeof(i)); i.f = 1; memcpy(&w, (char *)&i + 8, 4); \
    printf("xi.bit.%s %d\n", #f, __builtin_ctz(w)); } while (0)
    BIT(dying); BIT(crashed); BIT(shutdown); BIT(paused); BIT(blocked);
    BIT(running); BIT(hvm); BIT(debugged); BIT(xenstore); BIT(hap);
  }
  P("res.size", sizeof(struct xen_memory_reservation));
  P("res.extent_start", offsetof(struct xen_memory_reservation, extent_start));
  P("res.nr_extents", offsetof(struct xen_memory_reservation, nr_extents));
  P("res.extent_order", offsetof(struct xen_memory_reservation, extent_order));
  P("res.mem_flags", offsetof(struct xen_memory_reservation, mem_flags));
  P("res.domid", offsetof(struct xen_memory_reservation, domid));
  P("vi.size", sizeof(xc_vcpuinfo_t));
  P("vi.vcpu", offsetof(xc_vcpuinfo_t, vcpu));
  P("vi.online", offsetof(xc_vcpuinfo_t, online));
  P("vi.blocked", offsetof(xc_vcpuinfo_t, blocked));
  P("vi.running", offsetof(xc_vcpuinfo_t, running));
  P("vi.cpu_time", offsetof(xc_vcpuinfo_t, cpu_time));
  P("vi.cpu", offsetof(xc_vcpuinfo_t, cpu));
  P("vc.vcpu", offsetof(struct xen_domctl_vcpucontext, vcpu));
  P("vc.ctxt", offsetof(struct xen_domctl_vcpucontext, ctxt));
  P("ctx64.size", sizeof(vcpu_guest_context_x86_64_t));
  P("ctx32.size", sizeof(vcpu_guest_context_x86_32_t));
  P("ctxany.size", sizeof(vcpu_guest_context_any_t));
  P("evc.size", sizeof(struct xen_domctl_ext_vcpucontext));
  P("evc.vcpu", offsetof(struct xen_domctl_ext_vcpucontext, vcpu));
  P("evc.size_field", offsetof(struct xen_domctl_ext_vcpucontext, size));
  P("evc.mcg_cap", offsetof(struct xen_domctl_ext_vcpucontext, mcg_cap));
  P("xs.vcpu", offsetof(struct xen_domctl_vcpuextstate, vcpu));
  P("xs.xfeature_mask", offsetof(struct xen_domctl_vcpuextstate, xfeature_mask));
  P("xs.size", offsetof(struct xen_domctl_vcpuextstate, size));
  P("xs.buffer", offsetof(struct xen_domctl_vcpuextstate, buffer));
  P("vm.vcpu", offsetof(struct xen_domctl_vcpu_msrs, vcpu));
  P("vm.msr_count", offsetof(struct xen_domctl_vcpu_msrs, msr_count));
  P("vm.msrs", offsetof(struct xen_domctl_vcpu_msrs, msrs));
  P("vm.entry", sizeof(xen_domctl_vcpu_msr_t));
  P("mx.size", sizeof(struct mmuext_op));
  P("mx.cmd", offsetof(struct mmuext_op, cmd));
  P("mx.arg1", offsetof(struct mmuext_op, arg1));
  P("mx.arg2", offsetof(struct mmuext_op, arg2));
  P("mx.pin_l1", MMUEXT_PIN_L1_TABLE);
  P("mx.pin_l4", MMUEXT_PIN_L4_TABLE);
  P("mx.unpin", MMUEXT_UNPIN_TABLE);
  P("ml.size", sizeof(struct xen_machphys_mfn_list));
  P("ml.max_extents", offsetof(struct xen_machphys_mfn_list, max_extents));
  P("ml.extent_start", offsetof(struct xen_machphys_mfn_list, extent_start));
  P("ml.nr_extents", offsetof(struct xen_machphys_mfn_list, nr_extents));
  P("domid_xen", DOMID_XEN);
  P("dc.setvcpucontext", XEN_DOMCTL_setvcpucontext);
  P("dc.getvcpucontext", XEN_DOMCTL_getvcpucontext);
  P("dc.getvcpuinfo", XEN_DOMCTL_getvcpuinfo);
  P("dc.set_ext", XEN_DOMCTL_set_ext_vcpucontext);
  P("dc.get_ext", XEN_DOMCTL_get_ext_vcpucontext);
  P("dc.setxs", XEN_DOMCTL_setvcpuextstate);
  P("dc.getxs", XEN_DOMCTL_getvcpuextstate);
  P("dc.get_msrs", XEN_DOMCTL_get_vcpu_msrs);
  P("dc.set_msrs", XEN_DOMCTL_set_vcpu_msrs);
  P("so.sched_id", offsetof(struct xen_domctl_scheduler_op, sched_id));
  P("so.cmd", offsetof(struct xen_domctl_scheduler_op, cmd));
  P("so.weight", offsetof(struct xen_domctl_scheduler_op, u.credit.weight));
  P("so.cap", offsetof(struct xen_domctl_scheduler_op, u.credit.cap));
  P("so.weight2", offsetof(struct xen_domctl_scheduler_op, u.credit2.weight));
  P("so.cap2", offsetof(struct xen_domctl_scheduler_op, u.credit2.cap));
  P("so.credit_size", sizeof(struct xen_domctl_sched_credit));
  P("so.credit2_size", sizeof(struct xen_domctl_sched_credit2));
  P("so.putinfo", XEN_DOMCTL_SCHEDOP_putinfo);
  P("so.getinfo", XEN_DOMCTL_SCHEDOP_getinfo);
  P("dc.scheduler_op", XEN_DOMCTL_scheduler_op);
  P("sc.sched_id", XEN_SYSCTL_sched_id);
  P("sc.sched_id_off", offsetof(struct xen_sysctl, u.sched_id.sched_id));
  P("sched.credit", XEN_SCHEDULER_CREDIT);
  P("sched.credit2", XEN_SCHEDULER_CREDIT2);
  P("hb.size", sizeof(xc_hypercall_buffer_t));
  P("hb.param_shadow", offsetof(xc_hypercall_buffer_t, param_shadow));
  P("hb.dir", offsetof(xc_hypercall_buffer_t, dir));
  P("hb.ubuf", offsetof(xc_hypercall_buffer_t, ubuf));
  P("hb.sz", offsetof(xc_hypercall_buffer_t, sz));
  return 0;
}
"#;

fn probe() -> HashMap<String, usize> {
    let dir = std::env::temp_dir().join(format!("xensim-shim-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    std::fs::write(&src, format!("#include <string.h>\n{PROBE}")).unwrap();
    let exe = dir.join("probe");
    let st = Command::new("gcc")
        .args(["-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc must be installed (Makefile deps)");
    assert!(
        st.success(),
        "compiling the layout probe against the Xen headers failed"
    );
    let out =
        xcmig_testkit::process::run(&mut Command::new(&exe), std::time::Duration::from_secs(120));
    std::fs::remove_dir_all(&dir).ok();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn abi_offsets_match_the_installed_xen_headers() {
    let p = probe();
    let u = DOMCTL_U;
    let checks: &[(&str, usize)] = &[
        ("domctl.size", DOMCTL_SIZE),
        ("sysctl.size", SYSCTL_SIZE),
        ("domctl.u", u),
        ("domctl.cmd", DOMCTL_CMD),
        ("domctl.interface_version", DOMCTL_INTERFACE_VERSION),
        ("domctl.domain", DOMCTL_DOMAIN),
        ("sysctl.u", SYSCTL_U),
        ("version", INTERFACE_VERSION as usize),
        ("sysversion", INTERFACE_VERSION as usize),
        ("shadow.op", shadow_op::OP),
        ("shadow.mode", shadow_op::MODE),
        ("shadow.mb", shadow_op::MB),
        ("shadow.dirty_bitmap", shadow_op::DIRTY_BITMAP),
        ("shadow.pages", shadow_op::PAGES),
        ("shadow.fault_count", shadow_op::FAULT_COUNT),
        ("shadow.dirty_count", shadow_op::DIRTY_COUNT),
        ("dcp.nr_leaves", domctl_cpu_policy::NR_LEAVES),
        ("dcp.nr_msrs", domctl_cpu_policy::NR_MSRS),
        ("dcp.leaves", domctl_cpu_policy::LEAVES),
        ("dcp.msrs", domctl_cpu_policy::MSRS),
        ("dcp.err_leaf", domctl_cpu_policy::ERR_LEAF),
        ("dcp.err_subleaf", domctl_cpu_policy::ERR_SUBLEAF),
        ("dcp.err_msr", domctl_cpu_policy::ERR_MSR),
        ("scp.index", sysctl_cpu_policy::INDEX),
        ("scp.nr_leaves", sysctl_cpu_policy::NR_LEAVES),
        ("scp.nr_msrs", sysctl_cpu_policy::NR_MSRS),
        ("scp._rsvd", sysctl_cpu_policy::RSVD),
        ("scp.leaves", sysctl_cpu_policy::LEAVES),
        ("scp.msrs", sysctl_cpu_policy::MSRS),
        ("tsc.tsc_mode", tsc_info::TSC_MODE),
        ("tsc.gtsc_khz", tsc_info::GTSC_KHZ),
        ("tsc.incarnation", tsc_info::INCARNATION),
        ("tsc.elapsed_nsec", tsc_info::ELAPSED_NSEC),
        ("vi.size", vcpuinfo::SIZE),
        ("vi.vcpu", vcpuinfo::VCPU),
        ("vi.online", vcpuinfo::ONLINE),
        ("vi.blocked", vcpuinfo::BLOCKED),
        ("vi.running", vcpuinfo::RUNNING),
        ("vi.cpu_time", vcpuinfo::CPU_TIME),
        ("vi.cpu", vcpuinfo::CPU),
        ("vc.vcpu", vcpucontext::VCPU),
        ("vc.ctxt", vcpucontext::CTXT),
        ("ctx64.size", VCPU_CONTEXT_X86_64_SIZE),
        ("ctx32.size", VCPU_CONTEXT_X86_32_SIZE),
        ("ctxany.size", VCPU_CONTEXT_ANY_SIZE),
        ("evc.size", ext_vcpucontext::SIZE),
        ("evc.vcpu", ext_vcpucontext::VCPU),
        ("evc.size_field", ext_vcpucontext::SIZE_FIELD),
        ("evc.mcg_cap", ext_vcpucontext::MCG_CAP),
        ("xs.vcpu", vcpuextstate::VCPU),
        ("xs.xfeature_mask", vcpuextstate::XFEATURE_MASK),
        ("xs.size", vcpuextstate::SIZE),
        ("xs.buffer", vcpuextstate::BUFFER),
        ("vm.vcpu", vcpu_msrs::VCPU),
        ("vm.msr_count", vcpu_msrs::MSR_COUNT),
        ("vm.msrs", vcpu_msrs::MSRS),
        ("vm.entry", vcpu_msrs::ENTRY_SIZE),
        ("mx.size", mmuext::SIZE),
        ("mx.cmd", mmuext::CMD),
        ("mx.arg1", mmuext::ARG1),
        ("mx.arg2", mmuext::ARG2),
        ("mx.pin_l1", mmuext::PIN_L1_TABLE as usize),
        ("mx.pin_l4", mmuext::PIN_L4_TABLE as usize),
        ("mx.unpin", mmuext::UNPIN_TABLE as usize),
        ("ml.size", machphys_mfn_list::SIZE),
        ("ml.max_extents", machphys_mfn_list::MAX_EXTENTS),
        ("ml.extent_start", machphys_mfn_list::EXTENT_START),
        ("ml.nr_extents", machphys_mfn_list::NR_EXTENTS),
        ("domid_xen", DOMID_XEN as usize),
        ("dc.setvcpucontext", domctl::SETVCPUCONTEXT as usize),
        ("dc.getvcpucontext", domctl::GETVCPUCONTEXT as usize),
        ("dc.getvcpuinfo", domctl::GETVCPUINFO as usize),
        ("dc.set_ext", domctl::SET_EXT_VCPUCONTEXT as usize),
        ("dc.get_ext", domctl::GET_EXT_VCPUCONTEXT as usize),
        ("dc.setxs", domctl::SETVCPUEXTSTATE as usize),
        ("dc.getxs", domctl::GETVCPUEXTSTATE as usize),
        ("dc.get_msrs", domctl::GET_VCPU_MSRS as usize),
        ("dc.set_msrs", domctl::SET_VCPU_MSRS as usize),
        ("so.sched_id", scheduler_op::SCHED_ID),
        ("so.cmd", scheduler_op::CMD),
        ("so.weight", scheduler_op::WEIGHT),
        ("so.cap", scheduler_op::CAP),
        ("so.weight2", scheduler_op::WEIGHT),
        ("so.cap2", scheduler_op::CAP),
        ("so.credit_size", scheduler_op::CREDIT_SIZE),
        ("so.credit2_size", scheduler_op::CREDIT_SIZE),
        ("so.putinfo", scheduler_op::PUTINFO as usize),
        ("so.getinfo", scheduler_op::GETINFO as usize),
        ("dc.scheduler_op", domctl::SCHEDULER_OP as usize),
        ("sc.sched_id", SYSCTL_SCHED_ID as usize),
        ("sc.sched_id_off", SYSCTL_U),
        ("sched.credit", xensim::XEN_SCHEDULER_CREDIT as usize),
        ("sched.credit2", xensim::XEN_SCHEDULER_CREDIT2 as usize),
        ("hvmctx.size", hvmcontext::SIZE),
        ("hvmctx.buffer", hvmcontext::BUFFER),
        ("pf3.num", pfinfo3::NUM),
        ("pf3.array", pfinfo3::ARRAY),
        ("leaf.size", CPUID_LEAF_SIZE),
        ("msr.size", MSR_ENTRY_SIZE),
        ("di.size", domaininfo::SIZE),
        ("di.domain", domaininfo::DOMAIN),
        ("di.flags", domaininfo::FLAGS),
        ("di.tot_pages", domaininfo::TOT_PAGES),
        ("di.max_pages", domaininfo::MAX_PAGES),
        ("di.outstanding_pages", domaininfo::OUTSTANDING_PAGES),
        ("di.shr_pages", domaininfo::SHR_PAGES),
        ("di.paged_pages", domaininfo::PAGED_PAGES),
        ("di.shared_info_frame", domaininfo::SHARED_INFO_FRAME),
        ("di.cpu_time", domaininfo::CPU_TIME),
        ("di.nr_online_vcpus", domaininfo::NR_ONLINE_VCPUS),
        ("di.max_vcpu_id", domaininfo::MAX_VCPU_ID),
        ("di.ssidref", domaininfo::SSIDREF),
        ("di.handle", domaininfo::HANDLE),
        ("di.cpupool", domaininfo::CPUPOOL),
        ("di.gpaddr_bits", domaininfo::GPADDR_BITS),
        ("di.arch_config", domaininfo::ARCH_CONFIG),
        ("dinf.dying", dominf::DYING as usize),
        ("dinf.hvm", dominf::HVM_GUEST as usize),
        ("dinf.shutdown", dominf::SHUTDOWN as usize),
        ("dinf.paused", dominf::PAUSED as usize),
        ("dinf.blocked", dominf::BLOCKED as usize),
        ("dinf.running", dominf::RUNNING as usize),
        ("dinf.debugged", dominf::DEBUGGED as usize),
        ("dinf.xs", dominf::XS_DOMAIN as usize),
        ("dinf.hap", dominf::HAP as usize),
        ("dinf.shift", dominf::SHUTDOWN_SHIFT as usize),
        ("xi.size", dominfo::SIZE),
        ("xi.domid", dominfo::DOMID),
        ("xi.ssidref", dominfo::SSIDREF),
        ("xi.shutdown_reason", dominfo::SHUTDOWN_REASON),
        ("xi.nr_pages", dominfo::NR_PAGES),
        ("xi.nr_outstanding_pages", dominfo::NR_OUTSTANDING_PAGES),
        ("xi.nr_shared_pages", dominfo::NR_SHARED_PAGES),
        ("xi.nr_paged_pages", dominfo::NR_PAGED_PAGES),
        ("xi.shared_info_frame", dominfo::SHARED_INFO_FRAME),
        ("xi.cpu_time", dominfo::CPU_TIME),
        ("xi.max_memkb", dominfo::MAX_MEMKB),
        ("xi.nr_online_vcpus", dominfo::NR_ONLINE_VCPUS),
        ("xi.max_vcpu_id", dominfo::MAX_VCPU_ID),
        ("xi.handle", dominfo::HANDLE),
        ("xi.cpupool", dominfo::CPUPOOL),
        ("xi.gpaddr_bits", dominfo::GPADDR_BITS),
        ("xi.arch_config", dominfo::ARCH_CONFIG),
        ("xi.bit.dying", dominfo::BIT_DYING as usize),
        ("xi.bit.crashed", dominfo::BIT_CRASHED as usize),
        ("xi.bit.shutdown", dominfo::BIT_SHUTDOWN as usize),
        ("xi.bit.paused", dominfo::BIT_PAUSED as usize),
        ("xi.bit.blocked", dominfo::BIT_BLOCKED as usize),
        ("xi.bit.running", dominfo::BIT_RUNNING as usize),
        ("xi.bit.hvm", dominfo::BIT_HVM as usize),
        ("xi.bit.debugged", dominfo::BIT_DEBUGGED as usize),
        ("xi.bit.xenstore", dominfo::BIT_XENSTORE as usize),
        ("xi.bit.hap", dominfo::BIT_HAP as usize),
        ("res.size", xensim_shim::dispatch::MEMORY_RESERVATION_SIZE),
        ("res.extent_start", 0),
        ("res.nr_extents", 8),
        ("res.extent_order", 16),
        ("res.mem_flags", 20),
        ("res.domid", 24),
        (
            "hb.size",
            std::mem::size_of::<xensim_shim::hcall::HypercallBuffer>(),
        ),
        (
            "hb.param_shadow",
            std::mem::offset_of!(xensim_shim::hcall::HypercallBuffer, param_shadow),
        ),
        (
            "hb.dir",
            std::mem::offset_of!(xensim_shim::hcall::HypercallBuffer, dir),
        ),
        (
            "hb.ubuf",
            std::mem::offset_of!(xensim_shim::hcall::HypercallBuffer, ubuf),
        ),
        (
            "hb.sz",
            std::mem::offset_of!(xensim_shim::hcall::HypercallBuffer, sz),
        ),
    ];
    let mut bad = Vec::new();
    for (name, ours) in checks {
        match p.get(*name) {
            Some(c) if c == ours => {}
            other => bad.push(format!("{name}: headers say {other:?}, shim uses {ours}")),
        }
    }
    assert!(bad.is_empty(), "layout mismatches:\n{}", bad.join("\n"));
}
