#!/usr/bin/env bash
# Starts real OpenSSH servers on free loopback ports, standing in for a rack of workstations, for
# the ssh provider's tests. Source it (from bash, `set -euo pipefail` is fine): it exports
# THUNDERHEAD_TEST_SSH, a directory holding
#   id_ed25519, id_ed25519.pub  the client key (no passphrase) every good host accepts
#   known_hosts                 the right host keys of every listening host, as [127.0.0.1]:PORT
#   known_hosts.wrong           the same, but with another key for the host on SSH_WRONG_KEY_PORT
#   hosts.env                   KEY=VALUE lines, no quotes: SSH_HOST, SSH_USER, SSH_PORTS (the
#                               good hosts, comma-separated), SSH_REFUSING_PORT (a server that
#                               refuses the key), SSH_WRONG_KEY_PORT, SSH_DOWN_PORT (nothing
#                               listens), SSH_REMOTE_DIR (an empty directory the login user owns)
#   ssh_config                  for people: `ssh -F "$THUNDERHEAD_TEST_SSH/ssh_config" h1 CMD`
#                               (hosts h1 h2 h3, refusing, down)
# and stops the servers, whatever they left running, and the directory when the sourcing shell
# exits (before any EXIT trap set earlier, which still runs). Source it once per shell; the
# servers are that shell's background jobs, so a bare `wait` there would wait for them too.
#
# As root the servers run as a system user of their own, `thssh` (THUNDERHEAD_TEST_SSH_USER),
# created here when missing, so logins are as that user, as on a workstation; otherwise they
# run as the current user, who is then the login user. A server is the "subreaper" of what its
# logins leave behind (a detached agent is reparented to it, not to init), so everything a test
# started through ssh ends with it.
set -euo pipefail

ssh_peers_start=$(date +%s.%N)
ssh_peers_user="${THUNDERHEAD_TEST_SSH_USER:-thssh}"
# The system's python when there is one: a version manager's shim takes a third of a second.
ssh_peers_python=python3
[ ! -x /usr/bin/python3 ] || ssh_peers_python=/usr/bin/python3

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "scripts/peers/sshd.sh: needs OpenSSH's server and client: apt-get install openssh-server openssh-client" >&2
        return 1 2>/dev/null || exit 1
    fi
    echo "==> installing openssh-server"
    # The package's postinst starts the system's sshd on port 22 unless policy-rc.d says no
    # (Debian's container images ship one that does; a machine without one gets it for the
    # install only).
    ssh_peers_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        ssh_peers_policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$ssh_peers_policy"
        chmod 755 "$ssh_peers_policy"
    fi
    ssh_peers_rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=300 openssh-server openssh-client; } || ssh_peers_rc=$?
    [ -z "$ssh_peers_policy" ] || rm -f "$ssh_peers_policy"
    # Should a system sshd have started all the same, stop it: nothing of ours listens on 22.
    if [ -s /run/sshd.pid ] && [ "$(cat "/proc/$(cat /run/sshd.pid)/comm" 2>/dev/null)" = sshd ]; then
        kill "$(cat /run/sshd.pid)" 2>/dev/null || true
    fi
    [ "$ssh_peers_rc" = 0 ] || { echo "scripts/peers/sshd.sh: installing openssh-server failed" >&2; return 1 2>/dev/null || exit 1; }
fi

# Who logs in, and how a server is started as that user.
if [ "$(id -u)" = 0 ] && [ "$ssh_peers_user" != root ]; then
    if ! getent passwd "$ssh_peers_user" >/dev/null; then
        echo "==> creating the system user $ssh_peers_user (the test workstations' login user)"
        # '*': no password, but not a locked account ('!'), which an sshd running as root
        # without PAM would refuse.
        useradd --system --user-group --create-home --home-dir "/var/lib/$ssh_peers_user" \
            --shell /bin/sh --password '*' "$ssh_peers_user"
    fi
    ssh_peers_as=(setpriv "--reuid=$ssh_peers_user" "--regid=$(id -g "$ssh_peers_user")" --init-groups)
else
    ssh_peers_user=$(id -un)
    ssh_peers_as=()
fi
ssh_peers_home=$(getent passwd "$ssh_peers_user" | cut -d: -f6)
if [ -n "${ssh_peers_as[*]}" ]; then
    mkdir -p "$ssh_peers_home"
    chown "$ssh_peers_user:" "$ssh_peers_home"
fi

# Five free ports at once (so no two are the same): h1 h2 h3, the refusing host, the down port.
read -r -a ssh_peers_ports < <("$ssh_peers_python" -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

ssh_peers_dir=$(mktemp -d "${TMPDIR:-/tmp}/th-ssh.XXXXXX")
chmod 711 "$ssh_peers_dir" # the login user passes through to hosts/ and remote/
ssh_peers_pids=()

# Ends the servers and all that still runs under them (agents left by tests included), then
# removes the directory.
ssh_peers_descendants() {
    ps -e -o pid= -o ppid= | awk -v roots=" $* " '
        { parent[$1] = $2; pids[NR] = $1 }
        END {
            split(roots, r, " "); for (i in r) inside[r[i]] = 1
            do { grown = 0
                 for (i in pids) { p = pids[i]; if (!(p in inside) && (parent[p] in inside)) { inside[p] = 1; grown = 1 } }
            } while (grown)
            for (p in inside) if (index(roots, " " p " ") == 0) print p
        }'
}
ssh_peers_stop() {
    local round left
    if [ ${#ssh_peers_pids[@]} -gt 0 ]; then
        for round in 1 2 3 4 5 6 7 8 9 10; do
            left=$(ssh_peers_descendants "${ssh_peers_pids[@]}")
            [ -n "$left" ] || break
            # shellcheck disable=SC2086
            if [ "$round" = 1 ]; then kill -TERM $left 2>/dev/null || true; else kill -KILL $left 2>/dev/null || true; fi
            sleep 0.2
        done
        kill -TERM "${ssh_peers_pids[@]}" 2>/dev/null || true
        wait "${ssh_peers_pids[@]}" 2>/dev/null || true
    fi
    rm -rf "$ssh_peers_dir"
}
# Runs before an EXIT trap set earlier (emulators.sh sets one), not instead of it.
ssh_peers_earlier_trap() {
    eval "set -- $(trap -p EXIT)"
    printf '%s' "${3:-}"
}
ssh_peers_then=$(ssh_peers_earlier_trap)
# shellcheck disable=SC2064
trap "ssh_peers_stop; ${ssh_peers_then:-:}" EXIT

ssh-keygen -q -t ed25519 -N '' -C thunderhead-test-client -f "$ssh_peers_dir/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C stranger -f "$ssh_peers_dir/stranger"    # the refusing host's only key
ssh-keygen -q -t ed25519 -N '' -C impostor -f "$ssh_peers_dir/impostor"    # the wrong host key
mkdir -m 700 "$ssh_peers_dir/remote" "$ssh_peers_dir/hosts"
: >"$ssh_peers_dir/known_hosts"
: >"$ssh_peers_dir/known_hosts.wrong"
: >"$ssh_peers_dir/ssh_config"

ssh_peers_names=(h1 h2 h3 refusing)
for ssh_peers_i in 0 1 2 3; do
    ssh_peers_name=${ssh_peers_names[$ssh_peers_i]}
    ssh_peers_port=${ssh_peers_ports[$ssh_peers_i]}
    ssh_peers_h="$ssh_peers_dir/hosts/$ssh_peers_name"
    mkdir -m 700 "$ssh_peers_h"
    ssh-keygen -q -t ed25519 -N '' -C "$ssh_peers_name" -f "$ssh_peers_h/host_key"
    if [ "$ssh_peers_name" = refusing ]; then
        cp "$ssh_peers_dir/stranger.pub" "$ssh_peers_h/authorized_keys"
    else
        cp "$ssh_peers_dir/id_ed25519.pub" "$ssh_peers_h/authorized_keys"
    fi
    cat >"$ssh_peers_h/sshd_config" <<EOF
Port $ssh_peers_port
ListenAddress 127.0.0.1
HostKey $ssh_peers_h/host_key
PidFile $ssh_peers_h/sshd.pid
AuthorizedKeysFile $ssh_peers_h/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
Subsystem sftp internal-sftp
# Enough unauthenticated connections at once for tests that connect in parallel. MaxSessions
# stays at its default, 10 sessions over one connection, as on a real workstation.
MaxStartups 100:30:200
EOF
    ssh_peers_key=$(cut -d' ' -f1,2 "$ssh_peers_h/host_key.pub")
    echo "[127.0.0.1]:$ssh_peers_port $ssh_peers_key" >>"$ssh_peers_dir/known_hosts"
    if [ "$ssh_peers_name" = h1 ]; then
        echo "[127.0.0.1]:$ssh_peers_port $(cut -d' ' -f1,2 "$ssh_peers_dir/impostor.pub")" >>"$ssh_peers_dir/known_hosts.wrong"
    else
        echo "[127.0.0.1]:$ssh_peers_port $ssh_peers_key" >>"$ssh_peers_dir/known_hosts.wrong"
    fi
done
rm -f "$ssh_peers_dir"/stranger* "$ssh_peers_dir"/impostor* # used above, and only there

for ssh_peers_name in h1 h2 h3 refusing down; do
    case $ssh_peers_name in
        h1) ssh_peers_port=${ssh_peers_ports[0]} ;; h2) ssh_peers_port=${ssh_peers_ports[1]} ;;
        h3) ssh_peers_port=${ssh_peers_ports[2]} ;; refusing) ssh_peers_port=${ssh_peers_ports[3]} ;;
        down) ssh_peers_port=${ssh_peers_ports[4]} ;;
    esac
    cat >>"$ssh_peers_dir/ssh_config" <<EOF
Host $ssh_peers_name
    HostName 127.0.0.1
    Port $ssh_peers_port
    User $ssh_peers_user
EOF
done
cat >>"$ssh_peers_dir/ssh_config" <<EOF
Host *
    IdentityFile $ssh_peers_dir/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $ssh_peers_dir/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 5
    LogLevel ERROR
EOF

if [ -n "${ssh_peers_as[*]}" ]; then
    chown -R "$ssh_peers_user:" "$ssh_peers_dir/hosts" "$ssh_peers_dir/remote"
    if ! "${ssh_peers_as[@]}" test -r "$ssh_peers_dir/hosts/h1/sshd_config"; then
        echo "scripts/peers/sshd.sh: $ssh_peers_user cannot reach $ssh_peers_dir: set TMPDIR to a directory every user can pass through, such as /tmp" >&2
        return 1 2>/dev/null || exit 1
    fi
elif [ "$(id -u)" = 0 ]; then
    mkdir -p -m 755 /run/sshd # an sshd running as root wants its privilege separation directory
fi
# Newer servers (OpenSSH 9.8+) penalise a source after failed logins; the refusing host is
# refused on purpose, over and over.
if ${ssh_peers_as[@]+"${ssh_peers_as[@]}"} /usr/sbin/sshd -t -f /dev/null \
    -o HostKey="$ssh_peers_dir/hosts/h1/host_key" -o PerSourcePenalties=no >/dev/null 2>&1; then
    for ssh_peers_name in "${ssh_peers_names[@]}"; do
        echo "PerSourcePenalties no" >>"$ssh_peers_dir/hosts/$ssh_peers_name/sshd_config"
    done
fi

for ssh_peers_i in 0 1 2 3; do
    ssh_peers_h="$ssh_peers_dir/hosts/${ssh_peers_names[$ssh_peers_i]}"
    # prctl(PR_SET_CHILD_SUBREAPER) survives the execs into setpriv and sshd.
    "$ssh_peers_python" -c 'import ctypes, os, sys; ctypes.CDLL(None).prctl(36, 1, 0, 0, 0); os.execvp(sys.argv[1], sys.argv[1:])' \
        ${ssh_peers_as[@]+"${ssh_peers_as[@]}"} /usr/sbin/sshd -D -e -f "$ssh_peers_h/sshd_config" \
        </dev/null >"$ssh_peers_h/sshd.log" 2>&1 &
    ssh_peers_pids+=($!)
done

cat >"$ssh_peers_dir/hosts.env" <<EOF
SSH_HOST=127.0.0.1
SSH_USER=$ssh_peers_user
SSH_PORTS=${ssh_peers_ports[0]},${ssh_peers_ports[1]},${ssh_peers_ports[2]}
SSH_REFUSING_PORT=${ssh_peers_ports[3]}
SSH_WRONG_KEY_PORT=${ssh_peers_ports[0]}
SSH_DOWN_PORT=${ssh_peers_ports[4]}
SSH_REMOTE_DIR=$ssh_peers_dir/remote
EOF

# Up means: the good hosts run a command for the key, the refusing host refuses it. The four
# are awaited at once (a login takes a few tenths of a second).
ssh_peers_wait_for() {
    local name=$1 out rc deadline=$(($(date +%s) + 30))
    while :; do
        out=$(ssh -F "$ssh_peers_dir/ssh_config" "$name" true 2>&1) && rc=0 || rc=$?
        if [ "$name" = refusing ]; then
            case $out in *"Permission denied"*) return 0 ;; esac
        elif [ "$rc" = 0 ]; then
            return 0
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "scripts/peers/sshd.sh: the sshd for $name did not come up: $out" >&2
            cat "$ssh_peers_dir/hosts/$name/sshd.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
}
ssh_peers_waits=()
for ssh_peers_name in h1 h2 h3 refusing; do
    ssh_peers_wait_for "$ssh_peers_name" &
    ssh_peers_waits+=($!)
done
ssh_peers_rc=0
for ssh_peers_w in "${ssh_peers_waits[@]}"; do
    wait "$ssh_peers_w" || ssh_peers_rc=1
done
[ "$ssh_peers_rc" = 0 ] || return 1 2>/dev/null || exit 1

export THUNDERHEAD_TEST_SSH="$ssh_peers_dir"
echo "==> sshd as $ssh_peers_user on 127.0.0.1:${ssh_peers_ports[0]},${ssh_peers_ports[1]},${ssh_peers_ports[2]}" \
    "(refusing: ${ssh_peers_ports[3]}, down: ${ssh_peers_ports[4]}) in" \
    "$(awk -v a="$ssh_peers_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s; THUNDERHEAD_TEST_SSH=$ssh_peers_dir"
