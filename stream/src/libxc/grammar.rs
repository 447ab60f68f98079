//! The order of records in a libxc stream, as a small state machine.
//!
//! ```text
//!                  CPUID/MSR policy, X86_PV_INFO (PV), TOOLSTACK, optional;
//!                  v2 only: TSC and HVM_* before the first PAGE_DATA
//!                    +----+
//!                    |    v
//!               +-----------+
//!   headers --> |  Static   |
//!               +-----------+
//!     STATIC_DATA_END (v3) |            | STATIC_DATA_END (v3, PV)
//!     or first PAGE_DATA   |            v
//!     (v2, HVM)            |   +----------------+
//!                          |   | AwaitP2mFrames | (TSC, SHARED_INFO allowed)
//!                          |   +----------------+
//!                          |            | X86_PV_P2M_FRAMES (v2: from Static,
//!                          v            v  inferring STATIC_DATA_END)
//!               +-------------------------------+
//!       +-----> |            Memory             | PAGE_DATA, VERIFY, TSC,
//!       |       +-------------------------------+ HVM_*, SHARED_INFO, P2M
//!       |            | vcpu record (PV)      |
//!       |            v                       |
//!       |       +-------------+              |
//!       |       | VcpuContext | vcpu, TSC, SHARED_INFO (no memory records)
//!       |       +-------------+              |
//!       |            | CHECKPOINT            | CHECKPOINT
//!       |            v                       v
//!       |       +-------------------------------+
//!       +-------|        AfterCheckpoint        | EOF here: valid end of a
//!  any record   +-------------------------------+ checkpointed stream
//!
//!   END from any state once the stream is complete --> Ended
//!   (v3: STATIC_DATA_END seen; PV: X86_PV_INFO, X86_PV_P2M_FRAMES,
//!    PAGE_DATA and a non-empty X86_PV_VCPU_BASIC for vcpu 0 seen)
//!
//!   Back channel (COLO, secondary -> primary): state BackChannel, no headers,
//!   only CHECKPOINT_DIRTY_PFN_LIST (and optional records); ends at EOF.
//! ```
//!
//! Rules across states: records of the other guest type are rejected
//! (HVM_CONTEXT/HVM_PARAMS in PV; X86_PV_*, SHARED_INFO in HVM);
//! STATIC_DATA_END and the CPU policy records are v3 only; the static
//! records (CPU policies, X86_PV_INFO) only in state Static; optional
//! records are allowed anywhere before END. Warnings (not errors): TOOLSTACK (deprecated), empty HVM_PARAMS and
//! X86_PV_VCPU_* (spec errata), HVM_PARAMS after HVM_CONTEXT in one
//! checkpoint (libxenguest's own order, against the spec's "must"), and vcpu
//! contexts of a size Xen 4.17's restore refuses.

use super::error::{LengthRule, Missing, Violation, WarningKind};
use super::record::{P2mFrames, Record};
use super::types::{DomainType, VcpuKind, Version};

/// Which direction of a migration connection is being read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Channel {
    /// The stream proper, saver to restorer: headers, records, END.
    #[default]
    Forward,
    /// The COLO back channel, secondary to primary: no headers, only
    /// CHECKPOINT_DIRTY_PFN_LIST records, ends at EOF.
    Back,
}

/// Whether CHECKPOINT records are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Checkpoints {
    /// Any stream may be checkpointed (what a checker wants).
    #[default]
    Accept,
    /// A plain stream: CHECKPOINT is an error (what a plain restore wants).
    Reject,
}

/// Grammar parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GrammarOptions {
    /// Direction.
    pub channel: Channel,
    /// Checkpoint policy.
    pub checkpoints: Checkpoints,
}

/// Grammar states (see the module drawing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Before the end of static data.
    Static,
    /// PV, static data ended, X86_PV_P2M_FRAMES not seen yet.
    AwaitP2mFrames,
    /// Memory and end-of-checkpoint records.
    Memory,
    /// PV: vcpu records of this checkpoint have started; no more memory records.
    VcpuContext,
    /// Just after CHECKPOINT; EOF is a valid end here.
    AfterCheckpoint,
    /// END seen.
    Ended,
    /// Back channel.
    BackChannel,
}

/// Xen 4.17's sizes of `vcpu_guest_context_x86_{32,64}_t`.
const VCPU_BASIC_32: u64 = 2800;
const VCPU_BASIC_64: u64 = 5168;

/// The stream grammar for one stream.
#[derive(Debug, Clone)]
pub struct Grammar {
    version: Version,
    domain_type: DomainType,
    options: GrammarOptions,
    state: State,
    pv_width: Option<u8>,
    seen_page_data: bool,
    warned_extension: bool,
    seen_vcpu0_basic: bool,
    hvm_context_this_checkpoint: bool,
    checkpoints: u64,
}

impl Grammar {
    /// A grammar for a forward stream of `version` and `domain_type` (or a back
    /// channel when `options.channel` is [`Channel::Back`]; the other two
    /// arguments are then unused).
    pub fn new(version: Version, domain_type: DomainType, options: GrammarOptions) -> Grammar {
        Grammar {
            version,
            domain_type,
            options,
            state: match options.channel {
                Channel::Forward => State::Static,
                Channel::Back => State::BackChannel,
            },
            pv_width: None,
            seen_page_data: false,
            warned_extension: false,
            seen_vcpu0_basic: false,
            hvm_context_this_checkpoint: false,
            checkpoints: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Number of CHECKPOINT records seen.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    /// PV guest width from X86_PV_INFO, once seen.
    pub fn pv_width(&self) -> Option<u8> {
        self.pv_width
    }

    /// True when EOF is a valid end right now: after a CHECKPOINT, on the
    /// back channel, or after END.
    pub fn eof_is_valid(&self) -> bool {
        matches!(
            self.state,
            State::AfterCheckpoint | State::BackChannel | State::Ended
        )
    }

    fn static_ended(&self) -> bool {
        self.state != State::Static
    }

    /// Ends static data (explicitly or inferred).
    fn end_static(&mut self) {
        self.state = match self.domain_type {
            DomainType::X86Pv => State::AwaitP2mFrames,
            DomainType::X86Hvm => State::Memory,
        };
    }

    /// Requires the end of static data; in v2 `infer` ends it here.
    fn need_static_end(&mut self, infer: bool) -> Result<(), Violation> {
        if !self.static_ended() {
            if self.version == Version::V2 && infer {
                self.end_static();
            } else {
                return Err(Violation::BeforeStaticDataEnd);
            }
        }
        Ok(())
    }

    /// v3 requires static data to have ended before register records; v2
    /// streams had no such notion.
    fn need_static_end_v3(&self) -> Result<(), Violation> {
        if self.version == Version::V3 && !self.static_ended() {
            return Err(Violation::BeforeStaticDataEnd);
        }
        Ok(())
    }

    fn pv_p2m_seen(&self) -> bool {
        !matches!(self.state, State::Static | State::AwaitP2mFrames)
    }

    /// Checks `rec` against the grammar and advances. Returns a warning for
    /// records that are valid but noteworthy.
    ///
    /// For PAGE_DATA only the entries are looked at, so a value without page
    /// bytes (as the streaming reader has) is fine.
    pub fn feed(&mut self, rec: &Record<'_>) -> Result<Option<WarningKind>, Violation> {
        let rtype = rec.record_type();
        if self.state == State::Ended {
            return Err(Violation::AfterEnd);
        }
        if self.state == State::BackChannel {
            return match rec {
                Record::CheckpointDirtyPfnList(_) | Record::Optional { .. } => Ok(None),
                _ => Err(Violation::NotOnBackChannel),
            };
        }
        if let Record::Optional { .. } = rec {
            return Ok(None);
        }
        if let Record::CheckpointDirtyPfnList(_) = rec {
            return Err(Violation::BackChannelOnly);
        }
        if self.version == Version::V2
            && matches!(
                rec,
                Record::StaticDataEnd | Record::X86CpuidPolicy(_) | Record::X86MsrPolicy(_)
            )
        {
            return Err(Violation::NotInV2);
        }
        let pv_only = matches!(
            rec,
            Record::X86PvInfo(_)
                | Record::X86PvP2mFrames(_)
                | Record::X86PvVcpu(_)
                | Record::SharedInfo(_)
        );
        let hvm_only = matches!(rec, Record::HvmContext(_) | Record::HvmParams(_));
        match self.domain_type {
            DomainType::X86Hvm if pv_only => {
                return Err(Violation::WrongGuestType(DomainType::X86Hvm))
            }
            DomainType::X86Pv if hvm_only => {
                return Err(Violation::WrongGuestType(DomainType::X86Pv))
            }
            _ => {}
        }
        if self.state == State::AfterCheckpoint && !matches!(rec, Record::End) {
            // A new checkpoint's records begin.
            self.state = State::Memory;
        }
        debug_assert!(rtype.is_known() || rtype.is_xcmig_extension());
        let is_pv = self.domain_type == DomainType::X86Pv;
        match rec {
            Record::End => {
                if self.version == Version::V3 && !self.static_ended() {
                    return Err(Violation::Incomplete(Missing::StaticDataEnd));
                }
                if is_pv {
                    if self.pv_width.is_none() {
                        return Err(Violation::Incomplete(Missing::PvInfo));
                    }
                    if !self.pv_p2m_seen() {
                        return Err(Violation::Incomplete(Missing::P2mFrames));
                    }
                    if !self.seen_page_data {
                        return Err(Violation::Incomplete(Missing::PageData));
                    }
                    if !self.seen_vcpu0_basic {
                        return Err(Violation::Incomplete(Missing::Vcpu0Basic));
                    }
                }
                self.state = State::Ended;
                Ok(None)
            }
            Record::StaticDataEnd => {
                if self.static_ended() {
                    return Err(Violation::DuplicateStaticDataEnd);
                }
                self.end_static();
                Ok(None)
            }
            Record::X86CpuidPolicy(_) | Record::X86MsrPolicy(_) => {
                if self.static_ended() {
                    return Err(Violation::StaticAfterStaticDataEnd);
                }
                Ok(None)
            }
            Record::X86PvInfo(info) => {
                if self.pv_width.is_some() {
                    return Err(Violation::DuplicatePvInfo);
                }
                // Static data (spec 5.1); v2 had no STATIC_DATA_END, and there
                // X86_PV_P2M_FRAMES (which needs the width) ends static data.
                if self.static_ended() {
                    return Err(Violation::StaticAfterStaticDataEnd);
                }
                // X86_PV_P2M_FRAMES needs the width, so a first X86_PV_INFO
                // can never come after it.
                self.pv_width = Some(info.guest_width);
                Ok(None)
            }
            Record::X86PvP2mFrames(p2m) => {
                self.need_static_end(true)?;
                let width = self.pv_width.ok_or(Violation::BeforePvInfo)?;
                if self.state == State::VcpuContext {
                    return Err(Violation::MemoryAfterVcpuRecords);
                }
                let expected = P2mFrames::expected_frames(p2m.start_pfn, p2m.end_pfn, width);
                let got = p2m.frames.len() as u64;
                if expected != got {
                    return Err(Violation::P2mFrameCount { expected, got });
                }
                self.state = State::Memory;
                Ok(None)
            }
            Record::PageData(_) | Record::CompressedPageData(_) => {
                if is_pv {
                    if !self.pv_p2m_seen() {
                        self.need_static_end_v3()?;
                        return Err(Violation::BeforeP2mFrames);
                    }
                } else {
                    self.need_static_end(true)?;
                }
                if self.state == State::VcpuContext {
                    return Err(Violation::MemoryAfterVcpuRecords);
                }
                self.seen_page_data = true;
                if matches!(rec, Record::CompressedPageData(_)) && !self.warned_extension {
                    self.warned_extension = true;
                    return Ok(Some(WarningKind::XcmigExtension));
                }
                Ok(None)
            }
            Record::Verify => {
                self.need_static_end(false)?;
                if is_pv && !self.pv_p2m_seen() {
                    return Err(Violation::BeforeP2mFrames);
                }
                if self.state == State::VcpuContext {
                    return Err(Violation::MemoryAfterVcpuRecords);
                }
                Ok(None)
            }
            Record::Checkpoint => {
                if self.options.checkpoints == Checkpoints::Reject {
                    return Err(Violation::CheckpointNotAllowed);
                }
                self.need_static_end(false)?;
                if is_pv && !self.pv_p2m_seen() {
                    return Err(Violation::BeforeP2mFrames);
                }
                self.checkpoints += 1;
                self.hvm_context_this_checkpoint = false;
                self.state = State::AfterCheckpoint;
                Ok(None)
            }
            Record::X86TscInfo(_) => {
                self.need_static_end_v3()?;
                Ok(None)
            }
            Record::SharedInfo(_) => {
                self.need_static_end_v3()?;
                if self.pv_width.is_none() {
                    return Err(Violation::BeforePvInfo);
                }
                Ok(None)
            }
            Record::HvmContext(_) => {
                self.need_static_end_v3()?;
                self.hvm_context_this_checkpoint = true;
                Ok(None)
            }
            Record::HvmParams(params) => {
                self.need_static_end_v3()?;
                if params.is_empty() {
                    Ok(Some(WarningKind::EmptyRecord))
                } else if self.hvm_context_this_checkpoint {
                    Ok(Some(WarningKind::HvmParamsAfterHvmContext))
                } else {
                    Ok(None)
                }
            }
            Record::X86PvVcpu(v) => {
                self.need_static_end_v3()?;
                if !self.seen_page_data || !self.pv_p2m_seen() {
                    return Err(Violation::VcpuBeforePageData);
                }
                self.state = State::VcpuContext;
                if v.context.is_empty() {
                    return Ok(Some(WarningKind::EmptyRecord));
                }
                if v.kind == VcpuKind::Basic && v.vcpu_id == 0 {
                    self.seen_vcpu0_basic = true;
                }
                Ok(self.vcpu_size_warning(v.kind, v.context.len() as u64))
            }
            Record::Toolstack(_) => Ok(Some(WarningKind::DeprecatedToolstack)),
            Record::CheckpointDirtyPfnList(_) | Record::Optional { .. } => Ok(None),
        }
    }

    /// Xen 4.17's restore bounds on vcpu blobs (not spec rules, hence warnings).
    fn vcpu_size_warning(&self, kind: VcpuKind, got: u64) -> Option<WarningKind> {
        let limit = match kind {
            VcpuKind::Basic => LengthRule::Exactly(if self.pv_width == Some(4) {
                VCPU_BASIC_32
            } else {
                VCPU_BASIC_64
            }),
            VcpuKind::Extended => LengthRule::AtMost(128),
            VcpuKind::Xsave => LengthRule::AtLeast(16),
            VcpuKind::Msrs => LengthRule::MultipleOf(16),
        };
        let ok = match limit {
            LengthRule::Exactly(n) => got == n,
            LengthRule::AtMost(n) => got <= n,
            LengthRule::AtLeast(n) => got >= n,
            LengthRule::MultipleOf(n) | LengthRule::NonZeroMultipleOf(n) => got % n == 0,
        };
        (!ok).then_some(WarningKind::VcpuContextSize { got, limit })
    }
}
