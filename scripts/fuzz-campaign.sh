#!/usr/bin/env bash
# The fuzzing campaign of `make fuzz`: every cargo-fuzz target of
# fuzz/Cargo.toml (each [[bin]]) for FUZZ_SECONDS, FUZZ_JOBS targets at a
# time, each on a scratch copy of its committed corpus; then the corpus is
# minimised (libFuzzer -merge=1) and a section is appended to
# fuzz/results.md.
#
# A target's committed corpus has two parts: fuzz/corpus/TARGET/, the
# seeds, named for what they are and always kept; and
# fuzz/corpus/TARGET.found.tar.xz, the inputs campaigns found (libFuzzer's
# SHA-1 names), minimised, packed because the whole-restore targets' are
# tens of MiB of near-identical streams that xz packs a hundredfold.
#
#   FUZZ_SECONDS  run time per target (default 3600)
#   FUZZ_JOBS     targets fuzzed at once (default 2: one per core)
#   FUZZ_TARGETS  space-separated subset (default: every [[bin]])
#   CARGO_TARGET_DIR  build dir (default target/); the fuzz build goes to
#                 $CARGO_TARGET_DIR/fuzz
#
# A target that crashes or times out is restarted for the rest of its time,
# so one finding does not end its run; each finding stays in
# fuzz/artifacts/TARGET/ (crash-*, timeout-*, oom-*, leak-*) and is
# counted in the results. Logs: fuzz/artifacts/TARGET/campaign.log.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

secs=${FUZZ_SECONDS:-3600}
jobs=${FUZZ_JOBS:-2}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
target=${CARGO_TARGET_DIR:-target}
case $target in
    /*) ;;
    *) target="$root/$target" ;;
esac
export CARGO_TARGET_DIR="$target/fuzz"
export RUSTC_BOOTSTRAP=1

all_targets=$(sed -n '/^\[\[bin\]\]/,/^$/s/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml)
targets=${FUZZ_TARGETS:-$all_targets}

(cd fuzz && cargo fuzz build)
bindir="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
# save_hypercalls takes its values from tables, and comparison tracing costs
# it 70 % of its time (fuzz/README.md): its campaign binary is built without,
# into a build directory of its own so the other targets keep theirs.
ntc_dir="$target/fuzz-no-trace-compares"
if grep -qw save_hypercalls <<<"$targets"; then
    (cd fuzz && CARGO_TARGET_DIR=$ntc_dir cargo fuzz build --no-trace-compares save_hypercalls)
fi
binary() {
    case $1 in
        save_hypercalls) echo "$ntc_dir/x86_64-unknown-linux-gnu/release/$1" ;;
        *) echo "$bindir/$1" ;;
    esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Options per target: inputs of the whole-restore targets are streams of
# 1 MiB guests (seeds up to ~80 KiB); 256 KiB leaves room for added pages.
options() {
    local common=(-timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1)
    case $1 in
        restore_*) echo "${common[@]}" -max_len=262144 ;;
        # 3 header bytes and up to 32 rules of 8: the whole length at once.
        save_hypercalls) echo "${common[@]}" -max_len=259 -len_control=0 ;;
        *) echo "${common[@]}" ;;
    esac
}

# Fuzzes one target for $secs, restarting after each finding; writes
# $work/$t.stats (key=value lines).
campaign() {
    local t=$1 bin arts="$root/fuzz/artifacts/$1"
    bin=$(binary "$t")
    local corpus="$work/$t/corpus" log="$arts/campaign.log"
    local found="$work/$t/found" packed="$root/fuzz/corpus/$t.found.tar.xz"
    mkdir -p "$corpus" "$arts" "$found"
    if [[ -d fuzz/corpus/$t ]]; then
        cp fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    fi
    if [[ -f $packed ]]; then
        tar -xJf "$packed" -C "$found"
        cp "$found"/* "$corpus"/ 2>/dev/null || true
    fi
    : >"$log"
    local start=$SECONDS left execs=0 runs=0 last
    # Findings of earlier campaigns are not this one's.
    rm -f "$arts"/crash-* "$arts"/timeout-* "$arts"/oom-* "$arts"/leak-*
    while :; do
        left=$((secs - (SECONDS - start)))
        ((left > 0)) || break
        runs=$((runs + 1))
        local began=$SECONDS
        # shellcheck disable=SC2046
        nice -n 10 "$bin" "$corpus" $(options "$t") -max_total_time="$left" \
            -artifact_prefix="$arts/" >"$work/$t/run.log" 2>&1 || true
        cat "$work/$t/run.log" >>"$log"
        last=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/run.log" | tail -n 1)
        execs=$((execs + ${last:-0}))
        # Restart only after a finding, and not when a run dies at once
        # (a broken target would spin).
        grep -q 'Test unit written to' "$work/$t/run.log" || break
        ((SECONDS - began >= 2)) || break
    done
    local line cov ft corp
    line=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$line")
    local crashes timeouts
    crashes=$(ls "$arts" | grep -cE '^(crash|oom|leak)-' || true)
    timeouts=$(ls "$arts" | grep -cE '^timeout-' || true)
    # Minimise: the seeds first (kept whatever they cover), then what the
    # committed finds and this run's corpus add; libFuzzer names what it
    # adds by SHA-1, which tells the finds from the seeds.
    local merged="$work/$t/merged"
    mkdir -p "$merged" fuzz/corpus/"$t"
    cp fuzz/corpus/"$t"/* "$merged"/ 2>/dev/null || true
    nice -n 10 "$bin" -merge=1 $(options "$t") "$merged" "$found" "$corpus" \
        >>"$log" 2>&1 || true
    local finds=()
    mapfile -t finds < <(cd "$merged" && ls | grep -E '^[0-9a-f]{40}$' || true)
    if ((${#finds[@]} > 0)); then
        # Reproducible archive: sorted names, no owners or times.
        tar -C "$merged" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
            -cf - "${finds[@]}" | xz -9 -T1 >"$packed.new"
        mv "$packed.new" "$packed"
    else
        rm -f "$packed"
    fi
    corp=$(ls "$merged" | wc -l)
    local kib
    kib=$(du -sk "$merged" | cut -f1)
    local packed_kib=0
    [[ -f $packed ]] && packed_kib=$(( ($(stat -c %s "$packed") + 1023) / 1024 ))
    cat >"$work/$t.stats" <<EOF
target=$t
seconds=$((SECONDS - start))
execs=$execs
runs=$runs
cov=${cov:-?}
ft=${ft:-?}
corpus=$corp
corpus_kib=$kib
packed_kib=$packed_kib
crashes=$crashes
timeouts=$timeouts
EOF
}

running=0
for t in $targets; do
    echo "fuzz-campaign: $t for ${secs}s"
    campaign "$t" &
    running=$((running + 1))
    if ((running >= jobs)); then
        wait -n
        running=$((running - 1))
    fi
done
wait

# The results section.
commit=$(git rev-parse --short=12 HEAD)
git diff --quiet HEAD -- src stream xensim fuzz/src fuzz/fuzz_targets || commit="$commit (with uncommitted changes)"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
res=fuzz/results.md
if [[ ! -f $res ]]; then
    cat >"$res" <<'EOF'
# Fuzzing campaigns

Written by `make fuzz` (scripts/fuzz-campaign.sh), one section per run,
newest last. Per target: wall time, executions, libFuzzer's coverage
(`cov`: edges, `ft`: features) at the end of the run, the minimised corpus
kept in fuzz/corpus/TARGET and TARGET.found.tar.xz (inputs, their size,
the archive's size), crashes (crash, oom and leak
artifacts) and timeouts found. `make test` replays every committed corpus
(scripts/fuzz-smoke.sh). See fuzz/README.md for the targets.
EOF
fi
{
    echo
    echo "## $(date -u +%Y-%m-%dT%H:%MZ), commit $commit"
    echo
    echo "Machine: $cpu, $(nproc) cores. FUZZ_SECONDS=$secs, FUZZ_JOBS=$jobs."
    echo
    echo "| target | time (s) | executions | exec/s | cov | ft | corpus (inputs, KiB, KiB packed) | crashes | timeouts |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    total=0
    for t in $targets; do
        [[ -f $work/$t.stats ]] || continue
        # shellcheck disable=SC1090
        (
            . "$work/$t.stats"
            echo "| $target | $seconds | $execs | $((execs / (seconds > 0 ? seconds : 1))) | $cov | $ft | $corpus, $corpus_kib, ${packed_kib:-0} | $crashes | $timeouts |"
        )
        total=$((total + $(sed -n 's/^seconds=//p' "$work/$t.stats")))
    done
    echo
    echo "CPU time in this run: $((total / 60)) min."
} >>"$res"
tail -n 20 "$res"
# Findings fail the run.
! grep -h -E '^(crashes|timeouts)=[1-9]' "$work"/*.stats
