#!/usr/bin/env bash
# Start a one-machine Slurm cluster (controller + one compute node with every CPU) for tests and CI.
#
# Debian 12 ships Slurm 22.05 (`slurm-wlm`) and munge. Run as root; running it again is harmless: packages,
# the munge key and the config are only written when missing or different, daemons only started when down.
# Afterwards `sbatch`, `srun`, `squeue` and `scontrol` work against this machine.
#
#   sudo bash scripts/local_slurm.sh          # install + start
#   SLURM_CPUS=4 bash scripts/local_slurm.sh  # advertise another CPU count (default: nproc)
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "local_slurm.sh: run as root (it installs packages and starts system daemons)" >&2
  exit 1
fi

CPUS=${SLURM_CPUS:-$(nproc)}
NODE=$(hostname -s)
CONF_DIR=/etc/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm

# 1. Packages (slurm-wlm pulls slurmctld, slurmd and the client commands).
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# 2. Munge: the key must exist, belong to the munge user and be private; munged runs as that user.
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n </dev/null >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 20); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.5; done
fi

# 3. The node name must resolve for slurmctld and slurmd to find each other.
if ! getent hosts "$NODE" >/dev/null; then
  echo "127.0.0.1 $NODE" >>/etc/hosts
fi

# 4. slurm.conf. Choices that matter for tests:
#  - proctrack/linuxproc + task/none: no cgroups needed (containers often have none to give).
#  - CR_CPU: CPUs are the only consumable, so jobs need no memory request.
#  - a short KillWait and MinJobAge: requeued and cancelled jobs clear quickly.
#  - cred_expire=10: Slurm holds a requeued job until the old job credential expires (120 s by default), which
#    is what makes requeues slow on an idle machine.
mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
conf=$(cat <<CONF
ClusterName=local
SlurmctldHost=$NODE
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobRequeue=1
KillWait=5
MinJobAge=30
ReturnToService=2
MpiDefault=none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
)
if [ ! -f "$CONF_DIR/slurm.conf" ] || [ "$(cat "$CONF_DIR/slurm.conf")" != "$conf" ]; then
  echo "$conf" >"$CONF_DIR/slurm.conf"
  # A changed config needs fresh daemons.
  for pidfile in "$RUN_DIR/slurmctld.pid" "$RUN_DIR/slurmd.pid"; do
    if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  sleep 1
fi

# 5. Daemons.
if ! scontrol ping 2>/dev/null | grep -q UP; then
  slurmctld
fi
if ! pgrep -x slurmd >/dev/null; then
  slurmd
fi

for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "local Slurm up: node $NODE, $CPUS CPUs, partition debug"
    exit 0
  fi
  scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "local_slurm.sh: Slurm did not come up; see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log" >&2
sinfo >&2 || true
exit 1
