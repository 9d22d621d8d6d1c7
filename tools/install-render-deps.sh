#!/usr/bin/env bash
# System packages for the real napari render test (tests/test_napari_render.py): an X server
# (Xvfb) with Mesa's software OpenGL, and the X client libraries that the xcb platform plugin
# of the PyQt6 wheel loads. Qt's "offscreen" platform cannot be used instead: it creates no
# OpenGL context, so napari's canvas cannot draw.
# Installs with apt-get when run as root on Debian/Ubuntu; otherwise says what is missing
# (the render test then fails and names it too). Run by `make` when it creates .venv.
set -euo pipefail
packages=(xvfb libgl1-mesa-dri libglx-mesa0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
  libxcb-cursor0 libfontconfig1 libdbus-1-3)
command -v dpkg-query >/dev/null || { echo "install-render-deps: not a Debian system; install Xvfb and the X/xcb libraries yourself" >&2; exit 0; }
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-render-deps: missing ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
  exit 0
fi
echo "install-render-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
