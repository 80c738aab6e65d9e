# Shared by the Launch/ scripts: paths and the mpirun line. Source it, don't run it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLADMOP="$ROOT/.build/release/cladmop"
export OPENBLAS_NUM_THREADS=1
MPI_FLAGS="${MPI_FLAGS:-}"
# MPI_FLAGS is split at blanks into mpirun's words, without shell quoting: a quote in it would reach mpirun as a
# character ('--mca plm_rsh_args "-p 2222"' had ended with "unable to find the specified executable 2222\"").
# Refused, pointing at OpenMPI's own variables, which take a value of several words.
case "$MPI_FLAGS" in
    *[\"\'\\]*)
        echo "Launch/$(basename "$0"): MPI_FLAGS=$MPI_FLAGS: it is split at blanks, without quoting; give a parameter whose value has blanks as OpenMPI's variable instead (OMPI_MCA_NAME=\"VALUE\", for example OMPI_MCA_plm_rsh_args=\"-p 2222\")" >&2
        exit 2 ;;
esac
# Numbers in the C locale: awk's printf and its reading of numbers follow LC_NUMERIC (under a decimal-comma locale
# Launch/sweep-batch wrote a learning rate 1,5625e-05 that the configuration refused). LC_ALL would override it: its
# value moves to LANG, where every other category still reads it.
if [ -n "${LC_ALL:-}" ]; then export LANG="$LC_ALL"; unset LC_ALL; fi
export LC_NUMERIC=C
# OpenMPI keeps its session folders under TMPDIR (so do the build and the tests): one that is no writable folder had
# ended mpirun with exit 1 and its own text (a restart tried again), and as root mpirun made a missing one.
# A relative one is made absolute: the scripts change to the repository root before mpirun reads it.
case "${TMPDIR:-}" in ""|/*) ;; *) export TMPDIR="$PWD/$TMPDIR" ;; esac
if [ -n "${TMPDIR:-}" ] && { [ ! -d "$TMPDIR" ] || [ ! -w "$TMPDIR" ] || [ ! -x "$TMPDIR" ]; }; then
    echo "Launch/$(basename "$0"): TMPDIR=$TMPDIR: expected a folder this user can write (OpenMPI, the build and the tests keep their temporary files there); make it, or unset TMPDIR" >&2
    exit 2
fi
# mca_note: one line naming the OMPI_MCA_* settings of the environment, which every mpirun reads (a leftover one, such
# as OMPI_MCA_btl=openib,self, ends a job with OpenMPI's text alone); nothing when there are none.
mca_note() {
    local set; set="$(env | grep -E '^OMPI_MCA_[A-Za-z0-9_]+=' | cut -c1-200 | paste -sd ' ' -)" || true
    [ -z "$set" ] || echo "Launch/$(basename "$0"): note: mpirun also read these settings from the environment: $set (unset any not meant for this machine)" >&2
}
# Ranks write to a pseudo-terminal under mpirun: tell rank 0 whether the script's output really is one.
if [ -t 1 ]; then export CLADMOP_TTY=1; else export CLADMOP_TTY=0; fi
# The script's own stderr, for messages of a trap that runs while a job's output is redirected (a sweep's point log).
exec {SCRIPT_STDERR}>&2

# The scripts work in the repository root (cd "$ROOT"); CALLER_DIR is where one was started. A path given to a
# script's option, or to a cladmop path option that a script passes on, is relative to CALLER_DIR, as in any command;
# values inside --set stay relative to the repository root (docs/configuration.md).
CALLER_DIR="$PWD"
# from_caller PATH: PATH relative to CALLER_DIR, made absolute when the script was started elsewhere than the root
# ("" and none unchanged).
from_caller() {
    # A relative path that starts with "-" gets "./" (cladmop and mpirun would read "-1" as an option).
    case "$1" in ""|/*|none) printf '%s' "$1" ;; -*) from_caller "./$1" ;; *) if [ "$CALLER_DIR" -ef "$ROOT" ]; then printf '%s' "$1"; else printf '%s' "$CALLER_DIR/$1"; fi ;; esac
}
# caller_paths ARGS...: ARGS, NUL-separated, with the value of each path option (cladmop's, and a script's --hostfile
# and --out) made relative to CALLER_DIR (mapfile -d '' -t ARRAY < <(caller_paths "$@")).
caller_paths() {
    local a next=0
    for a in "$@"; do
        if [ "$next" = 1 ]; then printf '%s\0' "$(from_caller "$a")"; next=0; continue; fi
        case "$a" in
            --config|--run-dir|--pretrained|--train|--valid|--data|--aux|--checkpoint|--output|--json|--report|--plots|--hostfile|--out)
                printf '%s\0' "$a"; next=1 ;;
            --config=*|--run-dir=*|--pretrained=*|--train=*|--valid=*|--data=*|--aux=*|--checkpoint=*|--output=*|--json=*|--report=*|--plots=*|--hostfile=*|--out=*)
                printf '%s\0' "${a%%=*}=$(from_caller "${a#*=}")" ;;
            *) printf '%s\0' "$a" ;;
        esac
    done
}
# only_config_args ARGS...: exits 2 unless ARGS are --set KEY=VALUE and --config FILE words (each with its value, or
# as --set=... / --config=...): what may follow -- where a script passes those words to several cladmop commands.
only_config_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --set|--config) [ $# -ge 2 ] || { echo "Launch/$(basename "$0"): $1 after -- needs a value" >&2; exit 2; }; shift 2 ;;
            --set=*|--config=*) shift ;;
            *) echo "Launch/$(basename "$0"): $1 after --: only --set KEY=VALUE and --config FILE go there (the script passes them to each cladmop command it runs); its own options go before --" >&2; exit 2 ;;
        esac
    done
}
# config_args ARGS...: the --set and --config words of ARGS (NUL-separated), for `cladmop config`, which takes no other.
config_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --set|--config) [ $# -ge 2 ] && printf '%s\0%s\0' "$1" "$2"; shift; [ $# -gt 0 ] && shift ;;
            --set=*|--config=*) printf '%s\0' "$1"; shift ;;
            *) shift ;;
        esac
    done
}
# scoring_args ARGS...: the words of ARGS (--set and --config only, as only_config_args leaves them) that a scoring
# command (evaluate, predict) reads, NUL-separated: every --config, and the --set of the keys scoring takes from a
# configuration (Sources/cladmop/CLI.swift, loadForScoring: encoder.*, data.feature_store, data.icd_hierarchy,
# data.skip_bad_rows, train.stall_timeout). The others set up fine-tuning, which the checkpoint then fixes: passed on
# to evaluate, each was named as having no effect.
scoring_args() {
    local key
    while [ $# -gt 0 ]; do
        case "$1" in
            --config) printf '%s\0%s\0' "$1" "${2:-}"; shift; [ $# -gt 0 ] && shift ;;
            --config=*) printf '%s\0' "$1"; shift ;;
            --set|--set=*)
                if [ "$1" = --set ]; then key="${2:-}"; else key="${1#--set=}"; fi
                key="${key%%=*}"; key="${key#"${key%%[![:space:]]*}"}"; key="${key%"${key##*[![:space:]]}"}"   # as cladmop trims it
                case "$key" in
                    encoder.*|data.feature_store|data.icd_hierarchy|data.skip_bad_rows|train.stall_timeout)
                        if [ "$1" = --set ]; then printf '%s\0%s\0' "$1" "${2:-}"; else printf '%s\0' "$1"; fi ;;
                esac
                if [ "$1" = --set ]; then shift; [ $# -gt 0 ] && shift; else shift; fi ;;
            *) shift ;;
        esac
    done
}

# check_config CONFIG ARGS...: exits 2 with cladmop's message unless CONFIG with the --set and --config words of ARGS
# resolves (an unknown key, a value out of range); scripts call it before any split or run is written.
check_config() {
    local config="$1"; shift
    local settings; mapfile -d '' -t settings < <(config_args "$@")
    "$CLADMOP" config --config "$config" "${settings[@]}" >/dev/null || exit 2
}

# needs_value "$@": in an argument loop, exits 2 when the option $1 has no value after it, or an empty one (instead of
# bash's "unbound variable", status 1, or a default taken in its place).
needs_value() {
    [ $# -ge 2 ] && [ -n "$2" ] || { echo "Launch/$(basename "$0"): $1 needs a value (got none, or an empty one)" >&2; exit 2; }
    # The next option (`--hostfile -- ...`, `--hostfile -np 2`) is not a value (a negative number is, refused by the
    # option's own check); --pretrain-args takes option words.
    if [ "$1" != --pretrain-args ] && [[ "$2" == -* ]] && [[ ! "$2" =~ ^-[0-9.]+$ ]]; then
        echo "Launch/$(basename "$0"): $1 needs a value, got the option '$2'" >&2; exit 2
    fi
}

# script_help: prints the script's leading comment (its usage) to stdout and exits 0 (the scripts' -h / --help).
script_help() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 0
}

# cores: this machine's cores available to the scripts (nproc, which would follow OMP_NUM_THREADS and OMP_THREAD_LIMIT:
# OMP_NUM_THREADS=1 in the environment had made "all cores" one rank).
cores() { OMP_NUM_THREADS= OMP_THREAD_LIMIT= nproc; }
# rank_cap: the most ranks check_np lets run on this machine (8 per core).
rank_cap() { echo $((8 * $(cores))); }

# check_np N [HOSTFILE]: exits 2 unless N is a positive rank count; without a hostfile (ranks on this machine,
# oversubscribed past its cores) at most rank_cap ranks (a typo such as -np 999999 would start that many processes).
check_np() {
    [[ "$1" =~ ^[1-9][0-9]{0,5}$ ]] || { echo "Launch/$(basename "$0"): -np $1: expected a positive integer (the number of ranks)" >&2; exit 2; }
    local cap; cap="$(rank_cap)"
    # An emulated cluster's nodes (Launch/cluster) are namespaces of this machine: its ranks run here too.
    if { [ -z "${2:-}" ] || cluster_flags "$2" >/dev/null; } && [ "$1" -gt "$cap" ]; then
        echo "Launch/$(basename "$0"): -np $1: this machine has $((cap / 8)) cores; at most $cap ranks run on it (one per core is fastest; an emulated cluster's nodes share them); more ranks need more nodes (--hostfile, where the script takes one)" >&2
        exit 2
    fi
}

# pretrain_np NP CONFIG_ARGS...: NP capped at train.global_batch of the pretraining configuration CONFIG_ARGS give
# (--config FILE --set ...): pretrain needs a row of each global batch on every rank, so "all cores" on a machine with
# more cores than rows pretrains on as many ranks as rows (featurization and fine-tuning take any number).
pretrain_np() {
    local np="$1" batch; shift
    batch="$("$CLADMOP" config "$@" --get train.global_batch)" || exit 2
    if [ "$np" -gt "$batch" ]; then
        echo "Launch/$(basename "$0"): pretraining on $batch ranks, not $np: train.global_batch is $batch (every rank needs a row of each batch)" >&2
        np="$batch"
    fi
    echo "$np"
}

# flat_config CONFIG_ARGS...: the resolved configuration of CONFIG_ARGS (`cladmop config`) as `section.key: value`
# lines, or exit 2 with cladmop's message.
flat_config() {
    local yaml
    yaml="$("$CLADMOP" config "$@")" || exit 2
    awk '/^[a-z_][a-z0-9_]*:$/ { section = substr($0, 1, length($0) - 1); next } /^  [a-z_][a-z0-9_]*:/ { sub(/^  /, ""); print section "." $0 }' <<< "$yaml"
}

# model_differences RUN_CONFIG SKIP_REGEX CONFIG_ARGS...: sets MODEL_DIFF to the keys that shape a pretrained model on
# which RUN_CONFIG (a run's config.yaml) and the configuration CONFIG_ARGS make (--config FILE --set ...) differ, one
# line each ("  in the run: KEY: V" / "  asked for:  KEY: V"; empty when they agree), keys matching SKIP_REGEX left out.
# Compared: model, loss, optimizer, data, the encoder's identity, and train's steps, batch, seed, rates and precision;
# not logging, checkpointing, fine-tuning or speed settings. Called directly (not in $(...)), so that a configuration
# cladmop refuses ends the script (flat_config exits 2).
model_differences() {
    local run_config="$1" skip="$2" have want; shift 2
    local keys='^(model\.|loss\.|optimizer\.|data\.|encoder\.(model_dir|max_tokens|precision):|train\.(global_batch|epochs|max_steps|seed|grad_clip|precision|patience|eval_every):)'
    want="$(flat_config "$@")"
    have="$(flat_config --config "$run_config")"
    want="$(grep -E "$keys" <<< "$want" | grep -Ev "$skip" || true)"
    have="$(grep -E "$keys" <<< "$have" | grep -Ev "$skip" || true)"
    MODEL_DIFF=""
    [ "$want" = "$have" ] && return 0
    MODEL_DIFF="$(diff <(echo "$have") <(echo "$want") | sed -n 's/^< /  in the run: /p; s/^> /  asked for:  /p' || true)"
    local n; n="$(wc -l <<< "$MODEL_DIFF")"
    [ "$n" -le 16 ] || MODEL_DIFF="$(head -16 <<< "$MODEL_DIFF")"$'\n'"  (and $((n - 16)) more lines)"
}

# check_phases "WORDS": exits 2 unless WORDS lists phases 1, 2 and 3, each at most once, separated by spaces.
check_phases() {
    local p seen=" " words=()
    # Digits and spaces only (no line breaks, no *), so that the scripts' `for phase in $phases` sees these words.
    [[ "$1" =~ ^[0-9\ ]*$ ]] || { echo "Launch/$(basename "$0"): --phases \"$1\": expected phases 1, 2 and/or 3 separated by spaces, e.g. \"1 3\"" >&2; exit 2; }
    read -ra words <<< "$1"
    [ "${#words[@]}" -gt 0 ] || { echo "Launch/$(basename "$0"): --phases \"$1\": expected phases 1, 2 and/or 3 separated by spaces, e.g. \"1 3\"" >&2; exit 2; }
    for p in "${words[@]}"; do
        case "$p" in 1|2|3) ;; *) echo "Launch/$(basename "$0"): --phases \"$1\": $p is not a phase (expected 1, 2 and/or 3 separated by spaces, e.g. \"1 3\")" >&2; exit 2 ;; esac
        [[ "$seen" != *" $p "* ]] || { echo "Launch/$(basename "$0"): --phases \"$1\": phase $p is listed twice" >&2; exit 2; }
        seen+="$p "
    done
}

# run_finished DIR: whether DIR holds a pretraining run that ran to its end (the last record of metrics.jsonl is the
# summary; a run stopped part way has only its start, config.yaml, and some steps, and a run resumed with higher limits
# and stopped again has steps after an earlier summary). cladmop's unfinished-run warning reads the log the same way.
run_finished() { [ -f "$1/metrics.jsonl" ] && tr -d '\r\000' < "$1/metrics.jsonl" | grep -v '^[[:space:]]*$' | tail -n 1 | grep -q '"type":"summary"'; }

# cluster_flags HOSTFILE: for a hostfile written by Launch/cluster (its line `# cladmop-cluster agent=A
# subnet=S`), prints the mpirun flags that reach its nodes: the launch agent that enters each node's network
# namespace, shared memory inside a node and TCP between nodes, both TCP channels (MPI's and the runtime's)
# on the cluster's subnet. Fails (prints nothing) for any other hostfile.
cluster_flags() {
    local spec agent subnet
    [ -f "$1" ] || return 1     # a FIFO or device would block grep; cladmop check-hostfile refuses it
    spec="$(grep -m1 -E '^# cladmop-cluster agent=[^ ]+ subnet=[0-9./]+$' "$1" 2>/dev/null)" || return 1
    agent="${spec#*agent=}"; agent="${agent%% *}"; subnet="${spec##*subnet=}"
    printf '%s\n' --mca plm_rsh_agent "$agent" --mca btl self,vader,tcp \
        --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet"
}

# check_out_folder DIR OPTION: exits 2 naming OPTION unless DIR is a folder or can be created: a file there (or on
# its way) or a link to nothing is refused before any work, with the reason (mkdir alone said "File exists", status 1).
check_out_folder() {
    local above="$1"
    if [ -L "$1" ] && [ ! -e "$1" ]; then
        echo "Launch/$(basename "$0"): $2 $1 is a symbolic link to $(readlink -- "$1"), which does not exist; link it to a folder, or name another" >&2; exit 2
    fi
    while [ ! -e "$above" ] && [ "$above" != "$(dirname -- "$above")" ]; do above="$(dirname -- "$above")"; done
    if [ ! -d "$above" ]; then
        echo "Launch/$(basename "$0"): $2 $1: $above is $([ "$above" = "$1" ] && echo "a file" || echo "a file on its way"), not a folder" >&2; exit 2
    fi
}

# mpirun_line NP [HOSTFILE]: prints the mpirun command line (as words) for NP ranks, one BLAS thread
# each, bound to cores when there are enough, oversubscribed when NP exceeds the local cores; with the flags
# of cluster_flags when HOSTFILE is an emulated cluster's.
mpirun_line() {
    local np="$1" hostfile="${2:-}"
    local line=(mpirun -np "$np" -x OPENBLAS_NUM_THREADS=1)
    line+=(-x CLADMOP_TTY)
    # A forced fp32 GEMM library (CLADMOP_GEMM_BACKEND) reaches the ranks on every node.
    [ -n "${CLADMOP_GEMM_BACKEND:-}" ] && line+=(-x CLADMOP_GEMM_BACKEND)
    [ -n "${CLADMOP_DENORMALS:-}" ] && line+=(-x CLADMOP_DENORMALS)
    [ -n "${CLADMOP_FEATURIZE_WAVE_KB:-}" ] && line+=(-x CLADMOP_FEATURIZE_WAVE_KB)
    [ -n "${CLADMOP_MPI_START_TIMEOUT:-}" ] && line+=(-x CLADMOP_MPI_START_TIMEOUT)
    [ "$(id -u)" = 0 ] && line+=(--allow-run-as-root)
    if [ -n "$hostfile" ] && cluster_flags "$hostfile" >/dev/null; then
        # An emulated cluster (Launch/cluster): its nodes share this machine's cores, so no binding.
        mapfile -t -O "${#line[@]}" line < <(cluster_flags "$hostfile")
        line+=(--hostfile "$hostfile" --bind-to none)
    elif [ -n "$hostfile" ]; then
        line+=(--hostfile "$hostfile" --bind-to core)
        # A node that takes the connection and never answers (a hung sshd, a proxy) had kept mpirun waiting for ever
        # without a word: ssh's ConnectTimeout bounds the connection and its greeting, unless the launch agent or its
        # arguments are the user's (OMPI_MCA_plm_rsh_agent or _args set, or MPI_FLAGS naming them).
        if command -v ssh >/dev/null && [ -z "${OMPI_MCA_plm_rsh_agent+x}${OMPI_MCA_plm_rsh_args+x}" ] && [[ "${MPI_FLAGS:-}" != *plm_rsh* ]]; then
            line+=(--mca plm_rsh_args "-o ConnectTimeout=30")
        fi
    elif [ "$np" -gt "$(cores)" ]; then
        line+=(--oversubscribe --bind-to none)
    else
        line+=(--bind-to core)
    fi
    printf '%s\n' "${line[@]}"
}

# run_job COMMAND...: runs a job (an mpirun line, or another Launch script) as a child and waits for it. Ctrl-C,
# SIGTERM or SIGHUP to the script stops the job (SIGTERM to it; mpirun ends every rank; SIGKILL if it still runs 30 s
# later, as OpenMPI 4's mpirun may wait for an unreachable node, 45 s for a job that is itself a Launch script, which
# needs up to 35 s for its own; then SIGTERM, and 5 s later SIGKILL, to what it had started), then the
# script ends by the same signal (130 / 143 / 129 where it is ignored): a restart loop or a sweep does not go on as after an ordinary failure, and mpirun is not left
# running on its own (bash waiting for a foreground child dies of a SIGTERM without passing it on).
# A word ":" after cladmop's path is passed as "./:" (the same path): mpirun reads a lone ":" as the start of another
# app context ("--run-dir :" had ended with mpirun's "unknown option").
JOB_PID="" JOB_IS_MPIRUN=0
run_job() {
    [ "$1" != mpirun ] || need_mpirun
    JOB_IS_MPIRUN=0; [ "$1" != mpirun ] || JOB_IS_MPIRUN=1
    local words=() a after=0
    for a in "$@"; do
        [ "$after" = 1 ] && [ "$a" = : ] && a=./:
        [ "$a" = "$CLADMOP" ] && after=1
        words+=("$a")
    done
    trap "stop_job INT 130" INT
    trap "stop_job TERM 143" TERM
    trap "stop_job HUP 129" HUP
    JOB_START="$(date +%s)"
    "${words[@]}" {SCRIPT_STDERR}>&- 0<&0 &
    JOB_PID=$!
    local status=0
    wait "$JOB_PID" || status=$?
    JOB_PID=""
    trap - INT TERM HUP
    return "$status"
}
stop_job() {
    trap - INT TERM HUP
    if [ -n "$JOB_PID" ]; then
        # The processes below the job, gathered while it ends: mpirun's ssh to a node runs in a process group of its
        # own and had outlived mpirun, holding the script's output open; they are killed once the job has ended.
        local left p waited=0 limit=30
        [ "$JOB_IS_MPIRUN" = 1 ] || limit=45
        left="$(descendants "$JOB_PID")"
        kill -TERM "$JOB_PID" 2>/dev/null || true
        while kill -0 "$JOB_PID" 2>/dev/null && [ "$waited" -lt "$limit" ]; do
            sleep 1; waited=$((waited + 1)); left+=" $(descendants "$JOB_PID")"
        done
        kill -KILL "$JOB_PID" 2>/dev/null || true
        wait "$JOB_PID" 2>/dev/null || true
        # Each as PID:START (its start time): a pid that a new process took meanwhile is not touched. What outlived the
        # job (a build that Launch/setup ran, an ssh of mpirun) gets SIGTERM, and SIGKILL if it still runs 5 s later.
        local alive=() still
        for p in $left; do ! still_running "$p" || alive+=("$p"); done
        for p in "${alive[@]}"; do kill -TERM "${p%%:*}" 2>/dev/null || true; done
        for _ in 1 2 3 4 5; do
            still=()
            for p in "${alive[@]}"; do ! still_running "$p" || still+=("$p"); done
            [ "${#still[@]}" -gt 0 ] || break
            sleep 1
        done
        for p in "${alive[@]}"; do ! still_running "$p" || kill -KILL "${p%%:*}" 2>/dev/null || true; done
        # (Killed processes are gone a moment later: until then their mappings hold the segments removed below.)
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            still=()
            for p in "${alive[@]}"; do ! still_running "$p" || still+=("$p"); done
            [ "${#still[@]}" -gt 0 ] || break
            sleep 0.2
        done
        # An mpirun stopped this way (a second signal while it shuts down after the terminal's) leaves its session
        # folder, about 8 MB, in TMPDIR (OpenMPI 4: ompi.NODE.UID/pid.PID); removed when no process has its pid.
        if [ "$JOB_IS_MPIRUN" = 1 ] && ! kill -0 "$JOB_PID" 2>/dev/null; then
            local session
            # OpenMPI names the folder after this node (its short name, or the full one with orte_keep_fqdn_hostnames):
            # another node's folder in a shared TMPDIR is never touched.
            for session in "${TMPDIR:-/tmp}"/ompi."$(hostname -s 2>/dev/null || hostname)"."$(id -u)"/pid."$JOB_PID" \
                           "${TMPDIR:-/tmp}"/ompi."$(hostname)"."$(id -u)"/pid."$JOB_PID"; do
                [ -d "$session" ] && [ ! -L "$session" ] && rm -rf -- "$session" && { rmdir -- "${session%/*}" 2>/dev/null || true; }
            done
            # Likewise the shared-memory segments of its ranks on this node (/dev/shm/vader_segment.*, 4 MB each: left
            # after a Ctrl-C at the terminal, which signals the ranks and mpirun, then this script's SIGTERM cuts
            # mpirun's cleanup short): those of this user made since the job started that no process maps any more.
            # (The segments every process maps, read once: grep goes on past a process that ends meanwhile.)
            local segment mapped
            mapped="$(grep -hoE '/dev/shm/vader_segment\.[^[:space:]]+' /proc/[0-9]*/maps 2>/dev/null | sort -u)" || true
            for segment in /dev/shm/vader_segment.*; do
                [ -f "$segment" ] && [ ! -L "$segment" ] && [ -O "$segment" ] || continue
                [ "$(stat -c %Y -- "$segment" 2>/dev/null || echo 0)" -ge "${JOB_START:-0}" ] || continue
                ! grep -qxF -- "$segment" <<< "$mapped" || continue
                rm -f -- "$segment"
            done
        fi
    fi
    echo "Launch/$(basename "$0"): interrupted (SIG$1): the job was stopped" >&"$SCRIPT_STDERR" 2>/dev/null || true
    # The script's EXIT trap (a temporary file's removal) runs here, once: bash skips it when a signal ends the script
    # after a trap of that signal was set and reset (as run_job does), which the kill below would.
    run_exit_trap
    kill -s "$1" $$
    exit "$2"
}

# run_exit_trap: runs the script's EXIT trap now, if it has one, and clears it.
# (Its locals have names no script uses; an `exit N` in the trap would end the script with N, which no trap here does.)
run_exit_trap() {
    local __exit_trap_set __exit_trap_code
    __exit_trap_set="$(trap -p EXIT)"
    [ -n "$__exit_trap_set" ] || return 0
    __exit_trap_code="${__exit_trap_set#trap -- }"; __exit_trap_code="${__exit_trap_code% EXIT}"
    eval "__exit_trap_code=$__exit_trap_code"
    trap - EXIT
    eval "$__exit_trap_code" || true
}

# descendants PID: the processes below PID (from the parent ids in /proc/*/stat) as PID:START, space-separated
# (START: the start time, field 22 of /proc/PID/stat, which tells the process from a later one given its pid).
descendants() {
    local f line fields queue=("$1") p c
    local -A children=() starts=()
    for f in /proc/[0-9]*/stat; do
        { read -r line < "$f"; } 2>/dev/null || continue      # a process that ended meanwhile
        read -r -a fields <<< "${line##*) }"      # state, parent id, ..., start time (index 19)
        children[${fields[1]}]+=" ${f//[^0-9]/}"
        starts[${f//[^0-9]/}]="${fields[19]:-}"
    done
    while [ "${#queue[@]}" -gt 0 ]; do
        p="${queue[0]}"; queue=("${queue[@]:1}")
        for c in ${children[$p]:-}; do printf '%s:%s ' "$c" "${starts[$c]}"; queue+=("$c"); done
    done
}

# still_running PID:START: whether PID is still the process that started at START (field 22 of /proc/PID/stat: a pid
# that a new process took meanwhile is not it) and has not ended (a zombie, state Z, waits only to be reaped).
still_running() {
    local line fields
    { read -r line < "/proc/${1%%:*}/stat"; } 2>/dev/null || return 1
    read -r -a fields <<< "${line##*) }"
    [ "${fields[19]:-}" = "${1#*:}" ] && [ "${fields[0]:-}" != Z ]
}

# check_hostfile NP HOSTFILE: exits with status 2 and the file:line of the problem when HOSTFILE is
# malformed or has fewer slots than NP (mpirun's own messages do not say where).
# An emulated cluster's hostfile (Launch/cluster) whose cluster is down is refused too: mpirun had failed with status
# 243 ("plm_rsh_agent ... could not be found"), which a restart loop restarted.
check_hostfile() {
    [ -z "${2:-}" ] && return 0
    "$CLADMOP" check-hostfile "$2" -np "$1" >/dev/null || exit 2
    local flags agent
    if mapfile -t flags < <(cluster_flags "$2") && [ "${#flags[@]}" -gt 2 ]; then
        agent="${flags[2]}"   # --mca plm_rsh_agent AGENT ...
        if [ ! -x "$agent" ]; then
            echo "Launch/$(basename "$0"): --hostfile $2 is an emulated cluster's (Launch/cluster), which is not up: its launch agent $agent is missing; bring it up (Launch/cluster up ...) and use the hostfile it prints" >&2
            exit 2
        fi
    fi
}

# set_aside DIR: a result already at DIR is kept, not overwritten: it moves to DIR.previous-YYYYmmdd-HHMMSS
# (a numbered suffix if that exists too), and the new one then uses DIR.
# refuse_in_use DIR: exit 2 when a running cladmop holds DIR or a folder inside it (its lock on its run folder: DIR or
# one inside it, as Launch/main's fine-tuning run, an ablation's variants or a sweep's points), which must not be moved
# from under it (flock exits 75 only for a held lock).
refuse_in_use() {
    local d status
    [ -d "$1" ] || return 0
    while IFS= read -r -d '' d; do
        status=0; flock -n -E 75 "$d" true 2>/dev/null || status=$?
        [ "$status" != 75 ] || { echo "Launch/$(basename "$0"): $1 is in use by a running command (it holds the lock of $d); wait for it to end or choose another folder" >&2; exit 2; }
    done < <(case "$1" in -*) find -H "./$1" -type d -print0 ;; *) find -H "$1" -type d -print0 ;; esac 2>/dev/null)   # a name like -1 is no test of find's
}

# lock_result_folder DIR OPTION: exits 2 naming OPTION when another script holds DIR (its lock file beside DIR,
# .NAME.launch-lock, held by this script and every process it starts until the last ends). A script that sets DIR aside
# and writes it over several commands holds it throughout: between two of its commands no cladmop holds a lock in DIR,
# and a second Launch/main had moved the first one's run aside while it was being fine-tuned (a script review).
lock_result_folder() {
    local parent name lock status=0
    parent="$(dirname -- "$1")"; name="$(basename -- "$1")"; lock="$parent/.$name.launch-lock"
    mkdir -p -- "$parent" 2>/dev/null || true
    # Opened for appending (nothing is written: a link at that name does not truncate its target), or for reading when
    # another user's lock file is there (flock takes either).
    { exec {RESULT_LOCK}>>"$lock"; } 2>/dev/null || { exec {RESULT_LOCK}<"$lock"; } 2>/dev/null || {
        echo "Launch/$(basename "$0"): $2 $1: cannot open the lock file $lock beside it (its folder's permissions?); choose a folder you can write in" >&2; exit 2; }
    flock -n -E 75 "$RESULT_LOCK" || status=$?
    [ "$status" = 0 ] && return 0
    [ "$status" = 75 ] && { echo "Launch/$(basename "$0"): $2 $1 is being written by another Launch script (it holds $lock); wait for it to end or choose another folder" >&2; exit 2; }
    echo "Launch/$(basename "$0"): $2 $1: flock cannot lock $lock (status $status: no locks on that file system?); choose a folder on a local disk" >&2; exit 2
}

# check_result_folder DIR OPTION MARK...: exits 2 naming OPTION unless DIR is free for a script's result (checked before
# any work): missing, or a folder that is empty or holds an earlier result, one of the MARKs (globs relative to DIR,
# such as config.yaml), which set_aside then moves aside. A file, the repository or a folder above it or above the
# folder the script was started from, or a folder of anything else (data/, a run's checkpoints/) is refused: moving
# it aside had renamed inputs and the repository itself.
check_result_folder() {
    local dir="$1" opt="$2" m; shift 2
    check_out_folder "$dir" "$opt"
    [ -e "$dir" ] || return 0
    refuse_repository_folder "$dir" "$opt"
    [ -n "$(ls -A -- "$dir" 2>/dev/null)" ] || return 0
    for m in "$@"; do
        # Names, not patterns; a config.yaml only as cladmop writes it (another project's config.yaml is no run of ours).
        if [ "$m" = config.yaml ]; then
            is_run_config "$dir/$m" && return 0
        elif [ -e "$dir/$m" ]; then return 0
        fi
    done
    echo "Launch/$(basename "$0"): $opt $dir holds no earlier result of this script (none of: $*, as cladmop writes them); it is not moved aside: name a new folder, or an earlier result's" >&2
    exit 2
}
# refuse_repository_folder DIR OPTION [--not-caller]: exits 2 naming OPTION when DIR is the repository or a folder above
# it, or (without --not-caller) the folder the script was started from or above it, or is (or would be made) inside a
# folder of the repository's sources, inputs or tools (Sources/, data/, configs/, models/, ...; also through a link):
# a run written there mixes its files with them (a probe wrote runs into data/top and into the repository root).
refuse_repository_folder() {
    local dir="$1" opt="$2" abs d real above="$1"
    local places=("$ROOT"); [ "${3:-}" = --not-caller ] || places+=("$CALLER_DIR")
    if [ -d "$dir" ]; then
        abs="$(CDPATH= cd -- "$dir" 2>/dev/null && pwd -P)" || { echo "Launch/$(basename "$0"): $opt $dir: cannot enter that folder (its permissions?)" >&2; exit 2; }
        abs="${abs%/}"
        for d in "${places[@]}"; do
            case "$(cd -- "$d" && pwd -P)/" in "$abs"/*)
                echo "Launch/$(basename "$0"): $opt $dir is $([ "$d" = "$ROOT" ] && echo "the repository" || echo "the folder this script was started from") or a folder above it; name a folder for the results, such as runs/NAME" >&2
                exit 2 ;;
            esac
        done
    fi
    # The nearest folder that exists: a new run folder inside data/ is as much in data/.
    while [ ! -d "$above" ] && [ "$above" != "$(dirname -- "$above")" ]; do above="$(dirname -- "$above")"; done
    abs="$(CDPATH= cd -- "$above" 2>/dev/null && pwd -P)" || return 0
    for d in Sources Tests Launch configs data docs models benchmarks python hostfiles .build .git .ci; do
        [ -e "$ROOT/$d" ] || continue
        real="$(CDPATH= cd -- "$ROOT/$d" 2>/dev/null && pwd -P)" || continue
        case "${abs%/}/" in "${real%/}"/*)
            echo "Launch/$(basename "$0"): $opt $dir is in the repository's $d/ folder; name a folder for the results, such as runs/NAME" >&2
            exit 2 ;;
        esac
    done
}
# finetune_run_part DIR: prints the first part of a run (a fine-tuning run's, or a pretraining run's metrics.jsonl and
# checkpoints/) that DIR holds (best.json, metrics.jsonl,
# checkpoints, members, folds.csv, pretrained: what cladmop finetune refuses to write over without --overwrite), or
# nothing; a lone config.yaml, written before training starts, is no run.
finetune_run_part() {
    local m
    for m in best.json metrics.jsonl checkpoints members folds.csv pretrained; do [ -e "$1/$m" ] && { printf '%s' "$m"; return 0; }; done
    return 0
}
# is_run_config FILE: whether FILE is a config.yaml as a cladmop run writes it (a regular file whose first line is
# cladmop's header; another project's config.yaml is no run of ours).
is_run_config() { [ -f "$1" ] && head -n 1 -- "$1" 2>/dev/null | grep -qx '# resolved cladmop configuration'; }
# holds_finetune_run DIR: whether DIR holds a fine-tuning run, finished or not: its best.json, members/, pretrained/ or
# folds.csv at the top (a pretraining run keeps its best.json in checkpoints/), or a `finetune` record in its log.
holds_finetune_run() {
    local m
    for m in best.json members pretrained folds.csv; do [ -e "$1/$m" ] && return 0; done
    [ -f "$1/metrics.jsonl" ] && grep -q '"type":"finetune"' -- "$1/metrics.jsonl" 2>/dev/null
}
# run_inner_folder DIR: prints the run folder that DIR is the checkpoints/, members/ or pretrained/ folder of (its
# parent holds the config.yaml a cladmop run writes), or nothing.
run_inner_folder() {
    local d parent
    d="$(no_trailing_slash "$1")"; parent="$(dirname -- "$d")"
    case "$(basename -- "$d")" in checkpoints|members|pretrained) ;; *) return 0 ;; esac
    is_run_config "$parent/config.yaml" && printf '%s' "$parent"
    return 0
}
# no_trailing_slash PATH: PATH without the slashes that end it ("runs/main/" from tab completion; "/" stays): set_aside's
# mv of "runs/main/" to "runs/main/.previous-..." would move a folder into itself.
no_trailing_slash() { local p="$1"; while [[ "$p" == ?*/ ]]; do p="${p%/}"; done; printf '%s' "$p"; }
# need_mpirun: exits 2 naming it unless mpirun is on PATH (it had been bash's status 127, restarted by Launch/pretrain
# --max-restarts, and every point of a sweep failed).
need_mpirun() {
    command -v mpirun > /dev/null 2>&1 && return 0
    echo "Launch/$(basename "$0"): mpirun is not on PATH (OpenMPI's launcher; Launch/setup installs the Debian package openmpi-bin): PATH=$PATH" >&"$SCRIPT_STDERR"
    exit 2
}

set_aside() {
    local dir to n=1
    dir="$(no_trailing_slash "$1")"
    [ -e "$dir" ] || return 0
    refuse_in_use "$dir"
    to="$dir.previous-$(date +%Y%m%d-%H%M%S)"
    while [ -e "$to" ]; do to="$dir.previous-$(date +%Y%m%d-%H%M%S)-$n"; n=$((n + 1)); done
    mv -- "$dir" "$to"
    echo "kept the previous $dir as $to" >&2
}

# phase1_report CONFIG [cladmop args]: the phase I trials that Launch/finetune reports on, when they are the latest
# trials of phase_I_train.csv by NCT id: with finetune.select_latest F > 0 in CONFIG (and the --set arguments) the latest
# F, which also select; with finetune.folds K >= 2 the latest 20 %, scored out of fold (each trial by the member that
# did not train on it; with finetune.ensemble R > 1 the mean of the R such members). Written once by `cladmop split` to data/splits/phase_I_latestP.csv (P = 100 F).
# Prints that path, or nothing when neither is set (phase_I_valid.csv selects and is reported on).
phase1_report() {
    local config="$1"; shift
    local f k pct
    local settings; mapfile -d '' -t settings < <(config_args "$@")
    f="$("$CLADMOP" config --config "$config" "${settings[@]}" --get finetune.select_latest)" || exit 2
    k="$("$CLADMOP" config --config "$config" "${settings[@]}" --get finetune.folds)" || exit 2
    pct="$(awk -v f="$f" 'BEGIN { printf "%d", 100 * f + 0.5 }')"
    # The report file is named by a whole percent and must hold exactly the trials that select: F = pct / 100.
    awk -v f="$f" -v p="$pct" 'BEGIN { d = 100 * f - p; exit !(d < 1e-9 && d > -1e-9) }' || {
        echo "Launch/$(basename "$0"): finetune.select_latest = $f: expected a whole percent (0, 0.01, ..., 0.9) for the report on the latest trials of phase_I_train.csv" >&2
        exit 2; }
    [ "$pct" = 0 ] && [ "$k" -ge 2 ] && { f=0.2; pct=20; }
    [ "$pct" = 0 ] && return 0
    mkdir -p "$ROOT/data/splits"
    local early="$ROOT/data/splits/phase_I_earliest$((100 - pct)).csv" latest="$ROOT/data/splits/phase_I_latest$pct.csv"
    split_once "$ROOT/data/top/phase_I_train.csv" "$(awk -v f="$f" 'BEGIN { print 1 - f }')" "$early" "$latest"
    echo "data/splits/phase_I_latest$pct.csv"
}

# split_once SRC FRACTION EARLY LATE: `cladmop split` (its messages on stderr) unless both halves exist (kept: the
# same split, once checked to hold exactly SRC's trials, the earlier ids in EARLY); one half alone (removed by hand,
# or left by an older split stopped part way) is refused, naming both, and so are halves of another SRC (a SRC split
# again, as after Launch/devtest's first-level files were remade: a later split of an older pair would let trials of
# a new development test select or train).
split_once() {
    if [ -s "$3" ] && [ -s "$4" ]; then
        # A python3 that does not run (none on PATH, or a broken one earlier in it) had ended the script with exit 2 and no word.
        python3 -c 'import csv, sys' >/dev/null 2>&1 || {
            echo "Launch/$(basename "$0"): python3 is needed to check that $3 and $4 are the split of $1, and \`python3 -c 'import csv, sys'\` fails ($(command -v python3 || echo 'no python3 on PATH')): install python3 (Debian: apt-get install python3) or put a working one first on PATH" >&2
            exit 2; }
        python3 - "Launch/$(basename "$0")" "$@" <<'PY' && return 0
import csv, sys
script, src, fraction, early, late = sys.argv[1:6]
def ids(path):
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        if "nctid" not in header:
            sys.exit(f"{script}: {path}: expected a TOP CSV with an nctid column")
        k = header.index("nctid")
        return [r[k].strip() for r in rows if len(r) > k]
a, b, s = ids(early), ids(late), ids(src)
if sorted(a + b) != sorted(s) or (a and b and max(a) >= min(b)) or len(a) != int(len(s) * float(fraction) + 0.5):
    sys.exit(f"{script}: {early} and {late} are not the split of {src} at {fraction} by NCT-id order (its trials changed "
             f"since they were made?): remove both to split it again")
PY
        exit 2
    fi
    local f other
    for f in "$3" "$4"; do
        other="$4"; [ "$f" = "$4" ] && other="$3"
        [ ! -e "$f" ] || { echo "Launch/$(basename "$0"): $f exists without its other half $other; remove it to split $1 again" >&2; exit 2; }
    done
    # Another script may have made the same pair meanwhile (this split is then refused): that pair is the one.
    run_job "$CLADMOP" split --data "$1" --fraction "$2" --train "$3" --valid "$4" >&2 || { [ -s "$3" ] && [ -s "$4" ]; } || exit 2
}

# out_of_fold CONFIG [cladmop args]: prints --out-of-fold when CONFIG (and the --set arguments) fine-tunes a
# cross-fitted ensemble (finetune.folds >= 2), whose reports score each trial with the member(s) that held it out.
out_of_fold() {
    local config="$1"; shift
    local k settings; mapfile -d '' -t settings < <(config_args "$@")
    k="$("$CLADMOP" config --config "$config" "${settings[@]}" --get finetune.folds)" || exit 2
    [ "$k" -ge 2 ] && echo --out-of-fold
    return 0
}

# has_option NAME ARGS...: whether ARGS hold the option NAME, as `NAME VALUE` or `NAME=VALUE` (a default is added
# only where the user gave none: the last occurrence is the one cladmop keeps).
has_option() {
    local name="$1" a; shift
    for a in "$@"; do [[ "$a" == "$name" || "$a" == "$name="* ]] && return 0; done
    return 1
}
