#!/usr/bin/env bash
# Installs (once, from Debian's packages) and starts a real single-host Slurm cluster for the tests:
# MUNGE with its own key and socket, slurmctld and two slurmd, all in a fresh temporary directory,
# every TCP port chosen free at run time and bound to 127.0.0.1 only. Source it as root: it exports
# SLURM_CONF and THUNDERHEAD_TEST_SLURM* and stops the whole cluster (and any job still running on
# it) when the sourcing shell exits.
#
# The cluster:
#   partition "main" (default): node "big", CPUs=128 declared on any machine (SlurmdParameters=
#                                config_overrides), so ~100 one-CPU allocations run at once
#   partition "tiny":           node "tiny", CPUs=1: a second job waits with Reason=Resources and a
#                                job asking for -c 2 waits forever with Reason=PartitionConfig
# Confinement: CommunicationParameters=NoCtldInAddrAny,NoInAddrAny makes slurmctld, slurmd and srun
# bind the address their host name resolves to instead of 0.0.0.0; the daemons run in their own UTS
# namespace whose host name is "localhost", so that address is 127.0.0.1 on any machine. They also
# run in their own PID namespace, so killing its first process ends every daemon, slurmstepd and job
# at once. The network namespace is the host's: jobs reach a server on 127.0.0.1 directly, and
# sbatch/squeue/scancel need nothing but SLURM_CONF.
set -euo pipefail

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
    echo "==> installing slurm-wlm and munge (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

slurm_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Takes the unshare PID and the directory as arguments, so that sourcing this script twice in one
# shell stops both clusters.
stop_slurm() {
    # SIGKILL: unshare --fork ignores SIGTERM; --kill-child then kills the namespace's first process,
    # and with it the kernel kills every other process of the namespace (daemons, slurmstepd, jobs).
    if [ -n "$1" ]; then
        kill -KILL "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
    local _
    for _ in $(seq 50); do
        pgrep -f "$2/init.sh" >/dev/null || break
        sleep 0.1
    done
    rm -rf "$2" 2>/dev/null || true
}
# Keep an EXIT trap that another script (e.g. emulators.sh) has already set.
slurm_previous_exit_trap() {
    local t
    t=$(trap -p EXIT)
    eval "set -- $t"
    slurm_prev_trap=${3:-}
}
slurm_previous_exit_trap
slurm_dir=$(mktemp -d)
trap "stop_slurm '' '$slurm_dir'; $slurm_prev_trap" EXIT
chmod 755 "$slurm_dir" # munged insists that every user can reach its socket
slurm_ctld_port=$(slurm_free_port)
slurm_big_port=$(slurm_free_port)
slurm_tiny_port=$(slurm_free_port)
mkdir -p "$slurm_dir/munge" "$slurm_dir/state" "$slurm_dir/spool/big" "$slurm_dir/spool/tiny" "$slurm_dir/log"

# MUNGE: a private key and socket, so a system munged (if any) is neither used nor disturbed.
mungekey --create --keyfile="$slurm_dir/munge/munge.key"
chown -R munge:munge "$slurm_dir/munge"
chmod 755 "$slurm_dir/munge"
chmod 600 "$slurm_dir/munge/munge.key"

cat >"$slurm_dir/slurm.conf" <<EOF
ClusterName=thunderhead
SlurmctldHost=localhost
SlurmctldPort=$slurm_ctld_port
SlurmdPort=$slurm_big_port
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$slurm_dir/munge/munge.socket
StateSaveLocation=$slurm_dir/state
SlurmdSpoolDir=$slurm_dir/spool/%n
SlurmctldPidFile=$slurm_dir/slurmctld.pid
SlurmdPidFile=$slurm_dir/slurmd.%n.pid
SlurmctldLogFile=$slurm_dir/log/slurmctld.log
SlurmdLogFile=$slurm_dir/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MaxArraySize=1001
MinJobAge=300
KillWait=10
NodeName=big NodeHostname=localhost NodeAddr=127.0.0.1 Port=$slurm_big_port CPUs=128 State=UNKNOWN
NodeName=tiny NodeHostname=localhost NodeAddr=127.0.0.1 Port=$slurm_tiny_port CPUs=1 State=UNKNOWN
PartitionName=main Nodes=big Default=YES MaxTime=INFINITE State=UP
PartitionName=tiny Nodes=tiny MaxTime=INFINITE State=UP
EOF

# The first process of the new PID namespace: starts the daemons in the foreground, each in its own
# session (a slurmd that shares the starting shell's session fails its jobs: "launch failed requeued
# held"), and waits.
cat >"$slurm_dir/init.sh" <<EOF
set -u
hostname localhost
cd /
runuser -u munge -- munged --foreground --socket="$slurm_dir/munge/munge.socket" \\
    --key-file="$slurm_dir/munge/munge.key" --log-file="$slurm_dir/munge/munged.log" \\
    --pid-file="$slurm_dir/munge/munged.pid" --seed-file="$slurm_dir/munge/munged.seed" </dev/null &
for _ in \$(seq 100); do [ -S "$slurm_dir/munge/munge.socket" ] && break; sleep 0.1; done
export SLURM_CONF="$slurm_dir/slurm.conf"
setsid slurmctld -D </dev/null >"$slurm_dir/log/slurmctld.out" 2>&1 &
setsid slurmd -D -N big </dev/null >"$slurm_dir/log/slurmd.big.out" 2>&1 &
setsid slurmd -D -N tiny </dev/null >"$slurm_dir/log/slurmd.tiny.out" 2>&1 &
wait
EOF

unshare --uts --pid --mount --fork --mount-proc --kill-child bash "$slurm_dir/init.sh" \
    </dev/null >"$slurm_dir/log/init.out" 2>&1 &
slurm_unshare_pid=$!

trap "stop_slurm $slurm_unshare_pid '$slurm_dir'; $slurm_prev_trap" EXIT

export SLURM_CONF="$slurm_dir/slurm.conf"
slurm_deadline=$((SECONDS + 60))
until [ "$(sinfo -h -N -o '%N %t' 2>/dev/null | sort | tr '\n' ' ')" = "big idle tiny idle " ]; do
    if [ "$SECONDS" -ge "$slurm_deadline" ] || ! kill -0 "$slurm_unshare_pid" 2>/dev/null; then
        echo "Slurm did not come up; its logs:" >&2
        tail -n 20 "$slurm_dir"/log/* "$slurm_dir/munge/munged.log" >&2 || true
        return 1 2>/dev/null || exit 1
    fi
    sleep 0.2
done
echo "==> Slurm on 127.0.0.1 (slurmctld :$slurm_ctld_port, slurmd :$slurm_big_port and :$slurm_tiny_port), SLURM_CONF=$SLURM_CONF"

# A command prefix for the Slurm provider (split on whitespace: the temporary directory has none).
export THUNDERHEAD_TEST_SLURM="env SLURM_CONF=$SLURM_CONF"
export THUNDERHEAD_TEST_SLURM_PARTITION=main
export THUNDERHEAD_TEST_SLURM_SMALL_PARTITION=tiny
