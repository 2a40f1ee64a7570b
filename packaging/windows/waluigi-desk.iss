; Inno Setup script for Waluigi Desk (Windows x64). Run on Windows, after the PyInstaller build:
;   powershell -ExecutionPolicy Bypass -File packaging\windows\build_windows.ps1
; or by hand:
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 packaging\windows\waluigi-desk.iss
; Input:  build\pyi-dist\waluigi-desk\ (waluigi-desk.exe windowed + waluigi-desk-cli.exe console)
; Output: dist\waluigi-desk-<version>-windows-x64-setup.exe

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "Waluigi Desk"
#define SrcDir "..\..\build\pyi-dist\waluigi-desk"

[Setup]
AppId={{6B0C3E4A-1E7D-4C51-9E0B-5A1D2F3C7A11}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Waluigi Desk maintainers
DefaultDirName={autopf}\Waluigi Desk
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; per-user install without admin rights by default; the user may choose all users
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=waluigi-desk-{#AppVersion}-windows-x64-setup
SetupIconFile=waluigi-desk.ico
UninstallDisplayIcon={app}\waluigi-desk.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SrcDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\waluigi-desk.exe"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\waluigi-desk.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\waluigi-desk.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; the app's own data (conversations) lives in %LOCALAPPDATA%\waluigi-desk and is kept
Type: filesandordirs; Name: "{app}\_internal\__pycache__"
