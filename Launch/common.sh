# Shared by the Launch/ scripts: paths and the mpirun line. Source it, don't run it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLADMOP="$ROOT/.build/release/cladmop"
export OPENBLAS_NUM_THREADS=1
MPI_FLAGS="${MPI_FLAGS:-}"
# Ranks write to a pseudo-terminal under mpirun: tell rank 0 whether the script's output really is one.
if [ -t 1 ]; then export CLADMOP_TTY=1; else export CLADMOP_TTY=0; fi

# mpirun_line NP [HOSTFILE]: prints the mpirun command line (as words) for NP ranks, one BLAS thread
# each, bound to cores when there are enough, oversubscribed when NP exceeds the local cores.
mpirun_line() {
    local np="$1" hostfile="${2:-}"
    local line=(mpirun -np "$np" -x OPENBLAS_NUM_THREADS=1)
    line+=(-x CLADMOP_TTY)
    [ "$(id -u)" = 0 ] && line+=(--allow-run-as-root)
    if [ -n "$hostfile" ]; then
        line+=(--hostfile "$hostfile" --bind-to core)
    elif [ "$np" -gt "$(nproc)" ]; then
        line+=(--oversubscribe --bind-to none)
    else
        line+=(--bind-to core)
    fi
    printf '%s\n' "${line[@]}"
}

# check_hostfile NP HOSTFILE: exits with status 2 and the file:line of the problem when HOSTFILE is
# malformed or has fewer slots than NP (mpirun's own messages do not say where).
check_hostfile() {
    [ -z "${2:-}" ] && return 0
    "$CLADMOP" check-hostfile "$2" -np "$1" >/dev/null || exit 2
}
