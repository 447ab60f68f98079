//! The libxl record order, as a state machine (drawn in the module
//! documentation of [`super`]).

use super::error::{LibxlError, LibxlErrorKind, LibxlWarning};
use super::record::{LibxlRecord, RecordPos};

/// What the caller should do after a record accepted by [`LibxlGrammar`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibxlNext {
    /// Read another libxl record.
    LibxlRecord,
    /// Read the libxc stream (from its image header) until its END or its
    /// next CHECKPOINT record.
    StartLibxc,
    /// Resume the libxc stream after a checkpoint, until END or CHECKPOINT.
    ResumeLibxc,
    /// The stream is complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    BeforeLibxc,
    InLibxc,
    InCheckpoint,
    AfterLibxc,
    Ended,
}

/// Guest type as far as libxl cares: emulator records are HVM-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// Paravirtualised: no emulator.
    Pv,
    /// HVM or PVH.
    Hvm,
}

/// The libxl record ordering rules, as a state machine (see the module
/// documentation for the diagram).
///
/// - `LIBXC_CONTEXT` exactly once, and `END` only after the libxc stream
///   has ended;
/// - after each libxc `CHECKPOINT` record, libxl records up to a
///   `CHECKPOINT_END`; `CHECKPOINT_END` anywhere else is an error;
/// - `CHECKPOINT_STATE` belongs to the COLO back channel, never to the
///   main stream;
/// - EMULATOR_* records are for HVM guests only (libxl rejects them for PV).
#[derive(Debug, Clone)]
pub struct LibxlGrammar {
    phase: Phase,
    guest: Option<GuestKind>,
    first_emulator: Option<RecordPos>,
    checkpoints: u64,
    warnings: Vec<LibxlWarning>,
}

impl Default for LibxlGrammar {
    fn default() -> Self {
        Self::new()
    }
}

impl LibxlGrammar {
    /// A grammar at the start of a main (not back-channel) stream.
    pub fn new() -> Self {
        LibxlGrammar {
            phase: Phase::BeforeLibxc,
            guest: None,
            first_emulator: None,
            checkpoints: 0,
            warnings: Vec::new(),
        }
    }

    /// Checks one libxl record against the ordering rules.
    pub fn on_record(
        &mut self,
        pos: RecordPos,
        rec: &LibxlRecord,
    ) -> Result<LibxlNext, LibxlError> {
        let fail =
            |k: &'static str| Err(LibxlError::at(pos.offset, pos, LibxlErrorKind::Grammar(k)));
        match self.phase {
            Phase::InLibxc => return fail("libxl record while the libxc stream is being read"),
            Phase::Ended => return fail("record after END"),
            _ => {}
        }
        match rec {
            LibxlRecord::End => match self.phase {
                Phase::BeforeLibxc => fail("END before any LIBXC_CONTEXT record"),
                Phase::InCheckpoint => {
                    fail("END inside a checkpoint (CHECKPOINT_END expected first)")
                }
                _ => {
                    self.phase = Phase::Ended;
                    Ok(LibxlNext::Done)
                }
            },
            LibxlRecord::LibxcContext => match self.phase {
                Phase::BeforeLibxc => {
                    self.phase = Phase::InLibxc;
                    Ok(LibxlNext::StartLibxc)
                }
                _ => fail("second LIBXC_CONTEXT record"),
            },
            LibxlRecord::EmulatorXenstoreData { .. } | LibxlRecord::EmulatorContext { .. } => {
                if self.guest == Some(GuestKind::Pv) {
                    return Err(LibxlError::at(
                        pos.offset,
                        pos,
                        LibxlErrorKind::EmulatorForPv,
                    ));
                }
                if self.first_emulator.is_none() {
                    self.first_emulator = Some(pos);
                }
                if self.phase == Phase::BeforeLibxc {
                    self.warnings.push(LibxlWarning {
                        offset: pos.offset,
                        record: Some(pos),
                        message: "emulator record before LIBXC_CONTEXT (libxl writes it after the libxc stream)"
                            .into(),
                    });
                }
                Ok(LibxlNext::LibxlRecord)
            }
            LibxlRecord::CheckpointEnd => match self.phase {
                Phase::InCheckpoint => {
                    self.phase = Phase::InLibxc;
                    self.checkpoints += 1;
                    Ok(LibxlNext::ResumeLibxc)
                }
                _ => fail("CHECKPOINT_END outside a checkpoint"),
            },
            LibxlRecord::CheckpointState { .. } => {
                fail("CHECKPOINT_STATE belongs to the COLO back channel, not the main stream")
            }
            LibxlRecord::Optional { .. } => Ok(LibxlNext::LibxlRecord),
        }
    }

    /// The libxc domain header has been read: records the guest type and
    /// fails if an EMULATOR_* record was seen for a PV guest.
    pub fn set_guest(&mut self, guest: GuestKind) -> Result<(), LibxlError> {
        self.guest = Some(guest);
        match (guest, self.first_emulator) {
            (GuestKind::Pv, Some(pos)) => Err(LibxlError::at(
                pos.offset,
                pos,
                LibxlErrorKind::EmulatorForPv,
            )),
            _ => Ok(()),
        }
    }

    /// The libxc stream read a CHECKPOINT record: libxl records follow.
    /// Ignored unless the libxc stream is being read.
    pub fn libxc_checkpoint(&mut self) {
        if self.phase == Phase::InLibxc {
            self.phase = Phase::InCheckpoint;
        }
    }

    /// The libxc stream read its END record: libxl records follow.
    /// Ignored unless the libxc stream is being read.
    pub fn libxc_end(&mut self) {
        if self.phase == Phase::InLibxc {
            self.phase = Phase::AfterLibxc;
        }
    }

    /// Whether END has been accepted.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Whether libxl records of a checkpoint are being read (after a libxc
    /// CHECKPOINT, before CHECKPOINT_END).
    pub fn in_checkpoint(&self) -> bool {
        self.phase == Phase::InCheckpoint
    }

    /// Whether the libxc stream is currently being read.
    pub fn in_libxc(&self) -> bool {
        self.phase == Phase::InLibxc
    }

    /// Number of complete checkpoints (CHECKPOINT_END records) seen.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    /// Drains the warnings gathered so far.
    pub fn take_warnings(&mut self) -> Vec<LibxlWarning> {
        std::mem::take(&mut self.warnings)
    }
}
