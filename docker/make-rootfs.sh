#!/bin/sh
#
# make-rootfs.sh BINARY DEST -- a distroless root file system for BINARY.
#
# Used by docker/Dockerfile in the runtime stage (debian:stable-slim with
# only the runtime libraries installed): copies BINARY to
# DEST/usr/local/bin, every shared library it loads (as ldd resolves them
# here) and the dynamic loader, and writes the few /etc files mtlsd reads.
# The final image is FROM scratch plus DEST: no shell, no package manager,
# no coreutils, nothing to exec but mtlsd.  tests/packaging/check.sh runs
# the same script on the host and starts mtlsd in the result (chroot) to
# prove the copy is complete.
#
# POSIX sh: the Debian image has dash, not bash.

set -eu

if [ $# -ne 2 ]; then
	echo "usage: make-rootfs.sh BINARY DEST" >&2
	exit 2
fi
bin=$1
dest=${2%/}
[ -n "$dest" ] && [ "$dest" != "/" ] || {
	echo "make-rootfs: refusing DEST /" >&2
	exit 2
}
[ -x "$bin" ] || { echo "make-rootfs: $bin is not executable" >&2; exit 2; }

mkdir -p "$dest/usr/local/bin" "$dest/etc/mtlsd" "$dest/proc" "$dest/dev" \
    "$dest/sys"
cp "$bin" "$dest/usr/local/bin/mtlsd"
chmod 0755 "$dest/usr/local/bin/mtlsd"

# copy_lib PATH: the file PATH resolves to, under the name PATH, in the
# real (symlink-free) directory.
copy_lib() {
	dir=$(readlink -f "$(dirname "$1")")
	mkdir -p "$dest$dir"
	cp -L "$1" "$dest$dir/$(basename "$1")"
}

libs=$(ldd "$bin" | awk '
	$2 == "=>" && $3 ~ /^\// { print $3; next }
	$1 ~ /^\// { print $1 }')
[ -n "$libs" ] || { echo "make-rootfs: ldd found no libraries" >&2; exit 1; }
for lib in $libs; do
	copy_lib "$lib"
done
# Merged /usr: keep /lib and /lib64 as the symlinks they are in Debian, so
# that the loader's path in the binary (PT_INTERP, /lib64/ld-linux-x86-64.so.2
# or /lib/ld-linux-aarch64.so.1) resolves as it does there.
for l in /lib /lib64; do
	if [ -L "$l" ] && [ -d "$dest$(readlink -f "$l")" ]; then
		cp -P "$l" "$dest$l"
	fi
done
# The loader cache names the same files; without it, ld.so searches the
# Debian multiarch directories, which hold them too.
if [ -f /etc/ld.so.cache ]; then
	cp /etc/ld.so.cache "$dest/etc/ld.so.cache"
fi

# Users and groups: root, nobody, and the image's USER 65532 ("nonroot",
# as in distroless images).  mtlsd's sidecar configs use numbers, so none
# of this is needed to start; it makes ps(1) and logs readable.
cat >"$dest/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:mtlsd:/nonexistent:/sbin/nologin
EOF
cat >"$dest/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
EOF
# glibc >= 2.34 has the files and dns back-ends built in: nothing to dlopen.
cat >"$dest/etc/nsswitch.conf" <<'EOF'
passwd: files
group:  files
hosts:  files dns
EOF
# Docker and Kubernetes bind-mount their own over these three.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$dest/etc/hosts"
: >"$dest/etc/resolv.conf"
: >"$dest/etc/hostname"

chmod 0644 "$dest/etc/passwd" "$dest/etc/group" "$dest/etc/nsswitch.conf" \
    "$dest/etc/hosts" "$dest/etc/resolv.conf" "$dest/etc/hostname"
chmod 0755 "$dest" "$dest/etc" "$dest/etc/mtlsd"
echo "make-rootfs: $dest: mtlsd and $(echo "$libs" | wc -w) libraries"
