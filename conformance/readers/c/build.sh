#!/usr/bin/env bash
# Build the independent C reader: conformance/readers/c/build/mla_reader.
#
# It links the C-Blosc2 library shipped inside the python-blosc2 wheel (headers, shared
# library and blosc2.pc live in <site-packages>/blosc2/{include,lib}). Everything else
# (msgpack, JSON, SHA-256, UTF-8) is this reader's own code, so the only build tool needed
# is a C compiler (pkg-config is used when present); on a fresh Debian/Ubuntu machine
# running as root, gcc is installed with apt-get when no compiler is found.
#
# Environment:
#   PYTHON      python whose blosc2 package to link (default: <repo>/.venv/bin/python, then python3)
#   BLOSC2_DIR  the blosc2 package directory itself (skips asking python)
#   CC          C compiler (default: cc)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="$here/build"
CC="${CC:-cc}"

if ! command -v "$CC" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "build.sh: no C compiler; installing gcc with apt-get" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
        CC=gcc
    else
        echo "build.sh: no C compiler ($CC) found; install gcc" >&2
        exit 1
    fi
fi

if [ -z "${BLOSC2_DIR:-}" ]; then
    if [ -z "${PYTHON:-}" ]; then
        if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
    fi
    if ! BLOSC2_DIR="$("$PYTHON" -c 'import blosc2, os; print(os.path.dirname(blosc2.__file__))')"; then
        echo "build.sh: $PYTHON cannot import blosc2; run 'make test' first or set PYTHON/BLOSC2_DIR" >&2
        exit 1
    fi
fi
if [ ! -f "$BLOSC2_DIR/include/b2nd.h" ]; then
    echo "build.sh: $BLOSC2_DIR has no include/b2nd.h (is python-blosc2 installed from a wheel?)" >&2
    exit 1
fi

if command -v pkg-config >/dev/null 2>&1 && [ -f "$BLOSC2_DIR/lib/pkgconfig/blosc2.pc" ]; then
    blosc_cflags="$(PKG_CONFIG_PATH="$BLOSC2_DIR/lib/pkgconfig" pkg-config --cflags blosc2)"
    blosc_libs="$(PKG_CONFIG_PATH="$BLOSC2_DIR/lib/pkgconfig" pkg-config --libs blosc2)"
else
    blosc_cflags="-I$BLOSC2_DIR/include"
    blosc_libs="-L$BLOSC2_DIR/lib -lblosc2"
fi

mkdir -p "$out"
sources=(mla_reader.c frame.c data.c header.c validate.c spatial.c vcheck.c json.c msgpack.c sha256.c errors.c)
# shellcheck disable=SC2086  # the pkg-config output is a list of flags
"$CC" -std=c11 -D_POSIX_C_SOURCE=200809L -D_FILE_OFFSET_BITS=64 -Wall -Wextra -O2 ${CFLAGS:-} \
    $blosc_cflags -o "$out/mla_reader" "${sources[@]/#/$here/}" \
    $blosc_libs -Wl,-rpath,"$BLOSC2_DIR/lib" -lm ${LDFLAGS:-}
echo "built $out/mla_reader (C-Blosc2 from $BLOSC2_DIR)"
