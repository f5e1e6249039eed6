#!/bin/sh
# PID 1 of a test host's PID, mount and UTS namespaces. The namespaces die with
# this process, taking every mount and process of the host with them.
#
# Exit status tells the supervisor why the host went down:
#   42 reboot requested (SIGUSR1), 43 power-off requested (SIGUSR2),
#   44 sshd exited on its own, anything else: setup failed.
set -eu

M=$PF_MERGED
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$PF_LOWER,upperdir=$PF_UPPER,workdir=$PF_WORK" "$M"
mount -t proc -o nosuid,nodev,noexec proc "$M/proc"

# A fresh /run on every boot: this is what clears /run/reboot-required.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$M/run"
mkdir -p "$M/run/lock" "$M/run/sshd" "$M/run/patchfleet"
chmod 1777 "$M/run/lock"

# A private /dev with only the nodes a server userland needs.
mount -t tmpfs -o mode=0755,nosuid tmpfs "$M/dev"
mknod -m 666 "$M/dev/null" c 1 3
mknod -m 666 "$M/dev/zero" c 1 5
mknod -m 666 "$M/dev/full" c 1 7
mknod -m 666 "$M/dev/random" c 1 8
mknod -m 666 "$M/dev/urandom" c 1 9
mknod -m 666 "$M/dev/tty" c 5 0
mkdir -p "$M/dev/pts" "$M/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$M/dev/pts"
ln -s pts/ptmx "$M/dev/ptmx"
ln -s /proc/self/fd "$M/dev/fd"
ln -s /proc/self/fd/0 "$M/dev/stdin"
ln -s /proc/self/fd/1 "$M/dev/stdout"
ln -s /proc/self/fd/2 "$M/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$M/dev/shm"

# The local security repository, read-only.
mkdir -p "$M/srv/patchfleet-repo"
mount --bind "$PF_REPO" "$M/srv/patchfleet-repo"
mount -o remount,bind,ro "$M/srv/patchfleet-repo"

# Per-boot identity. The kernel's boot_id is shared by every host, so each
# boot gets its own, visible at the usual path.
hostname "$PF_HOSTNAME"
printf '%s\n' "$PF_BOOT_ID" >"$M/run/patchfleet/boot_id"
mount --bind "$M/run/patchfleet/boot_id" "$M/proc/sys/kernel/random/boot_id"
mount -o remount,bind,ro "$M/proc/sys/kernel/random/boot_id"

chroot_env() {
	env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 chroot "$M" "$@"
}

if [ "${PF_MODE:-host}" = setup ]; then
	chroot_env /bin/sh -eu /tmp/pf-setup.sh
	rm -f "$M/tmp/pf-setup.sh"
	exit 0
fi

if [ ! -e "$M/etc/ssh/ssh_host_ed25519_key" ]; then
	# First boot: identity for this host.
	printf '%s\n' "$PF_HOSTNAME" >"$M/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$PF_HOSTNAME" >"$M/etc/hosts"
	install -m 600 "$PF_SEED/ssh_host_ed25519_key" "$M/etc/ssh/ssh_host_ed25519_key"
	install -m 644 "$PF_SEED/ssh_host_ed25519_key.pub" "$M/etc/ssh/ssh_host_ed25519_key.pub"
	install -d -m 700 "$M/root/.ssh"
	install -m 600 "$PF_SEED/authorized_keys" "$M/root/.ssh/authorized_keys"
fi

trap 'exit 42' USR1
trap 'exit 43' USR2
trap 'exit 0' TERM

env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$M" \
	/usr/sbin/sshd -D -e -p "$PF_PORT" -o ListenAddress=127.0.0.1 &
sshd=$!
# wait returns early when a trapped signal arrives; the trap then exits.
wait "$sshd" || true
exit 44
