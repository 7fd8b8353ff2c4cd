#!/usr/bin/env bash
# Installs what spirit's build and tests need on a fresh Debian/Ubuntu machine (as root).
set -euo pipefail
need=()
command -v capnp >/dev/null || need+=(capnproto)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v python3 >/dev/null || need+=(python3)
command -v dbus-daemon >/dev/null || need+=(dbus)
command -v busctl >/dev/null || need+=(systemd)
command -v ip >/dev/null || need+=(iproute2)
command -v unshare >/dev/null || need+=(util-linux)
# real programs and tools the end-to-end tests start
command -v nft >/dev/null || need+=(nftables)
command -v redis-server >/dev/null || need+=(redis-server)
command -v nginx >/dev/null || need+=(nginx-light)
command -v tmux >/dev/null || need+=(tmux)
command -v vim.basic >/dev/null || command -v vim >/dev/null || need+=(vim)
# the language-neutral external plugin test speaks D-Bus from Python through GDBus
/usr/bin/python3 -c 'import gi; gi.require_version("Gio", "2.0")' 2>/dev/null || need+=(python3-gi gir1.2-glib-2.0)
command -v script >/dev/null || need+=(bsdutils)
command -v readelf >/dev/null || need+=(binutils)
command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || need+=(cargo)
# static libc for the statically linked test programs
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
